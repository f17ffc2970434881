"""cfn-lint on every template the app synthesises: CloudFormation's own rules, beyond cdk-nag's."""

import json
import subprocess
import sys
from pathlib import Path

from paymaster_infra.deployment import Paymaster

# Each check left out, and why (cfn-lint's rule ids).
IGNORED = {
    # aws-cdk-lib's lambda.Function makes the function depend on its role (and the role's default
    # policy, so that every grant exists before the first invocation); the role's ARN is also a
    # GetAtt of the function, which makes the dependency on the role alone redundant: harmless.
    "W3005": "the function's DependsOn on its role, which CDK writes",
}
CFN_LINT = Path(sys.executable).parent / "cfn-lint"


def test_every_synthesised_template_passes_cfn_lint(paymaster: Paymaster, outdir: Path) -> None:
    templates = sorted(outdir.glob("*.template.json"))
    assert {path.name for path in templates} == {
        f"{stack.stack_name}.template.json" for stack in (paymaster.state, paymaster.gateway)
    }
    result = subprocess.run(
        [str(CFN_LINT), "--format", "json", "--ignore-checks", *IGNORED, "--", *map(str, templates)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=1)
    assert result.returncode == 0, result.stderr
