"""What a policy change changes in the stacks, before it is deployed and without credentials.

    make policy-diff POLICY=policy/next.yaml [ENV=prod]
    python -m paymaster_infra.policy_change policy/next.yaml [deploy/prod.yaml]    # from infra/

The app is synthesised twice, once with the policy it deploys today (the deploy file's, else the
demo policy) and once with the new one, everything else the same; the two templates of each
stack are compared resource by resource. `cdk diff` says the same against the deployed stack,
but needs credentials; this says what the *policy* changes, wherever the stacks are.

The dependencies layer is an empty stand-in in both synths: it is built from the lock file, not
from the policy, so it cannot differ between them. A resource's `Metadata` (the CDK's construct
path and asset location) is not compared.
"""

import json
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from aws_cdk import App

from paymaster_infra.config import CONTEXT_DEPLOY_FILE, REPO_ROOT, AppConfig, ConfigError
from paymaster_infra.deployment import add_paymaster, stack_environment

# What CloudFormation acts on besides a resource's properties.
_COMPARED = ("Type", "Properties", "DependsOn", "Condition", "DeletionPolicy", "UpdateReplacePolicy")
# A layer version cannot be changed in place: a new one is made and the old one deleted.
_IMMUTABLE = frozenset({"AWS::Lambda::LayerVersion"})

Action = Literal["add", "modify", "replace", "remove"]


@dataclass(frozen=True)
class ResourceChange:
    stack: str
    logical_id: str
    type: str
    action: Action
    fields: tuple[str, ...] = ()
    """For a modify or replace: the properties (or other attributes) that differ."""


def template_changes(stack: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[ResourceChange]:
    """Each resource `after` adds, changes or drops against `before`, in logical-id order."""
    old: Mapping[str, Any] = before.get("Resources", {})
    new: Mapping[str, Any] = after.get("Resources", {})
    changes: list[ResourceChange] = []
    for logical_id in sorted(old.keys() | new.keys()):
        if logical_id not in new:
            changes.append(ResourceChange(stack, logical_id, old[logical_id]["Type"], "remove"))
        elif logical_id not in old:
            changes.append(ResourceChange(stack, logical_id, new[logical_id]["Type"], "add"))
        elif fields := _differing(old[logical_id], new[logical_id]):
            kind = new[logical_id]["Type"]
            action: Action = "replace" if kind in _IMMUTABLE or "Type" in fields else "modify"
            changes.append(ResourceChange(stack, logical_id, kind, action, fields))
    return changes + _followers(stack, new, changes)


def _followers(stack: str, resources: Mapping[str, Any], changes: list[ResourceChange]) -> list[ResourceChange]:
    """The resources CloudFormation updates because one they reference is replaced (a function
    mounting a new layer version), although their own template text is the same."""
    replaced = {change.logical_id for change in changes if change.action == "replace"}
    listed = {change.logical_id for change in changes}
    followers: list[ResourceChange] = []
    for logical_id, resource in sorted(resources.items()):
        if logical_id not in listed and (names := sorted(_references(resource) & replaced)):
            fields = tuple(f"follows {name}" for name in names)
            followers.append(ResourceChange(stack, logical_id, resource["Type"], "modify", fields))
    return followers


def _references(node: Any) -> set[str]:
    """The logical ids a resource's template names with `Ref` or `Fn::GetAtt`."""
    if isinstance(node, list):
        return set().union(*(_references(item) for item in node))
    if not isinstance(node, dict):
        return set()
    found: set[str] = set()
    for key, value in node.items():
        if key == "Ref" and isinstance(value, str):
            found.add(value)
        elif key == "Fn::GetAtt" and isinstance(value, list) and value:
            found.add(str(value[0]))
        else:
            found |= _references(value)
    return found


def _differing(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    fields: list[str] = []
    for key in _COMPARED:
        if key == "Properties":
            before, after = old.get(key, {}), new.get(key, {})
            fields += sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
        elif old.get(key) != new.get(key):
            fields.append(key)
    return tuple(fields)


def synthesise(config: AppConfig, workdir: Path) -> dict[str, dict[str, Any]]:
    """Every stack's template, by stack name, for `config` (its assets staged under `workdir`)."""
    app = App(outdir=str(workdir / "cdk.out"))
    add_paymaster(app, replace(config, staging_dir=workdir / "staging"), env=stack_environment(config))
    return {stack.stack_name: stack.template for stack in app.synth().stacks}


def without_dependencies(config: AppConfig, root: Path) -> AppConfig:
    """`config` with an empty dependencies layer under `root`: what synthesising needs of it,
    without building it from the lock file (no template differs but the layer's asset hash)."""
    (root / "deps" / "python").mkdir(parents=True)
    return replace(config, deps_dir=root / "deps")


def policy_changes(config: AppConfig, new_policy: Path) -> dict[str, list[ResourceChange]]:
    """Stack name → what deploying `new_policy` instead of `config.policy_file` changes in it."""
    with tempfile.TemporaryDirectory(prefix="paymaster-policy-diff-") as scratch:
        root = Path(scratch)
        same = without_dependencies(config, root)
        before = synthesise(same, root / "before")
        after = synthesise(replace(same, policy_file=new_policy), root / "after")
    return {name: template_changes(name, before[name], after.get(name, {})) for name in before}


def render(changes: Mapping[str, list[ResourceChange]]) -> str:
    lines: list[str] = []
    for stack, found in changes.items():
        lines.append(f"{stack}: {len(found)} resource(s) change" if found else f"{stack}: no changes")
        width = max((len(change.type) for change in found), default=0)
        lines += [
            f"  {change.action:<8} {change.type:<{width}}  {change.logical_id}"
            + (f"  ({', '.join(change.fields)})" if change.fields else "")
            for change in found
        ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """`NEW_POLICY [DEPLOY_FILE]`: print each stack's changes; exit 1 if the new policy is invalid."""
    if len(argv) not in (1, 2):
        print("usage: policy_change NEW_POLICY [DEPLOY_FILE]", file=sys.stderr)
        return 2
    context = {CONTEXT_DEPLOY_FILE: argv[1]} if len(argv) == 2 else {}
    try:
        # The configuration `app.py` would build from the same context.
        config = AppConfig.from_context(App(context=context).node)
        changes = policy_changes(config, REPO_ROOT / argv[0])
    except ConfigError as error:
        print(f"paymaster: {error}", file=sys.stderr)
        return 1
    print(render(changes))
    print(json.dumps({stack: len(found) for stack, found in changes.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
