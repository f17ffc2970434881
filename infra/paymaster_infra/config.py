"""Where the app finds what it deploys: layer contents, function code and the policy file.

Every path can be overridden with a context value (`cdk synth -c depsDir=...`, or
`python infra/app.py -c depsDir=...`); relative paths are taken from the repository root, so the
app behaves the same when run from `infra/` (the CDK CLI) or from the root.
"""

from dataclasses import dataclass, field
from pathlib import Path

from constructs import Node
from pydantic import EmailStr, TypeAdapter, ValidationError

from paymaster.adapters.policy_file import PolicyFileError, load_policy
from paymaster.domain.policy import Policy
from paymaster_infra.deploy_file import Defaults, DeployFile, DeployFileError, Deployment, load_deploy_file

REPO_ROOT = Path(__file__).resolve().parents[2]

CONTEXT_DEPS_DIR = "depsDir"
CONTEXT_POLICY_FILE = "policyFile"
CONTEXT_TOKENIZERS_DIR = "tokenizersDir"
CONTEXT_STAGING_DIR = "stagingDir"
# Who receives the operational alarms (the ops topic): comma-separated addresses, e.g.
# `-c opsEmails=platform@example.com,oncall@example.com`. Deployment configuration rather than
# policy: each account has its own operators, and a policy change redeploys the gateway stack only.
CONTEXT_OPS_EMAILS = "opsEmails"
_EMAIL: TypeAdapter[str] = TypeAdapter(EmailStr)
CONTEXT_DEPLOY_FILE = "deployFile"

DEFAULT_DEPS_DIR = "build/layers/deps"
DEFAULT_POLICY_FILE = "policy/demo.yaml"
DEFAULT_TOKENIZERS_DIR = "layers/tokenizers"
DEFAULT_STAGING_DIR = "build/staging"


class ConfigError(Exception):
    """An input of the app is missing or invalid; the message says how to fix it."""


@dataclass(frozen=True)
class AppConfig:
    """Inputs of the app. Layer directories hold the layer's top-level folder (`python/`, …)."""

    deps_dir: Path
    """Third-party dependencies (`python/`), built by `infra/build_layers.py`."""
    policy_file: Path
    """The policy YAML deployed with the gateway."""
    tokenizers_dir: Path
    """tiktoken BPE files (`tiktoken/`)."""
    staging_dir: Path
    """Scratch space where synth lays out assets that need a different folder shape."""
    ops_emails: tuple[str, ...] = ()
    """Subscribed to the ops topic; each confirms its subscription once, or receives nothing."""
    deployment: Deployment = field(default_factory=Defaults)
    """The deploy file's choices (`paymaster_infra.deploy_file`), or today's defaults without one."""
    core_dir: Path = REPO_ROOT / "layers" / "core"
    gateway_code_dir: Path = REPO_ROOT / "functions" / "gateway"
    settlement_retry_code_dir: Path = REPO_ROOT / "functions" / "settlement_retry"
    ledger_code_dir: Path = REPO_ROOT / "functions" / "ledger"
    ledger_denials_code_dir: Path = REPO_ROOT / "functions" / "ledger_denials"
    sweeper_code_dir: Path = REPO_ROOT / "functions" / "sweeper"
    forecast_code_dir: Path = REPO_ROOT / "functions" / "forecast"
    digest_code_dir: Path = REPO_ROOT / "functions" / "digest"
    month_close_code_dir: Path = REPO_ROOT / "functions" / "month_close"
    budget_alarm_code_dir: Path = REPO_ROOT / "functions" / "budget_alarm"

    @classmethod
    def from_context(cls, node: Node) -> "AppConfig":
        def path(key: str, default: str) -> Path:
            return REPO_ROOT / (node.try_get_context(key) or default)

        deployment: Deployment = Defaults()
        policy_file = path(CONTEXT_POLICY_FILE, DEFAULT_POLICY_FILE)
        deploy_file = node.try_get_context(CONTEXT_DEPLOY_FILE)
        if deploy_file:
            if node.try_get_context(CONTEXT_POLICY_FILE):
                raise ConfigError(
                    f"give the policy file in {deploy_file} (policy_file), not also with -c {CONTEXT_POLICY_FILE}"
                )
            try:
                deployment = load_deploy_file(REPO_ROOT / deploy_file)
            except DeployFileError as error:
                raise ConfigError(str(error)) from None
            policy_file = REPO_ROOT / deployment.policy_file
        return cls(
            deps_dir=path(CONTEXT_DEPS_DIR, DEFAULT_DEPS_DIR),
            policy_file=policy_file,
            tokenizers_dir=path(CONTEXT_TOKENIZERS_DIR, DEFAULT_TOKENIZERS_DIR),
            staging_dir=path(CONTEXT_STAGING_DIR, DEFAULT_STAGING_DIR),
            # The deploy file's, else the context value's (a deployment without a file).
            ops_emails=tuple(str(email) for email in deployment.ops_emails)
            if isinstance(deployment, DeployFile) and deployment.ops_emails
            else ops_emails(node.try_get_context(CONTEXT_OPS_EMAILS) or ""),
            deployment=deployment,
        )

    @property
    def deploy_file(self) -> DeployFile | None:
        """The deploy file, when the app was given one: its account and region are the stacks'."""
        return self.deployment if isinstance(self.deployment, DeployFile) else None

    def check(self) -> Policy:
        """Fail before synth with the fix, rather than with an asset error or at cold start.

        Returns the loaded policy: the stacks derive the gateway's provider permissions from it.
        """
        expected = {
            self.deps_dir / "python": "run `python infra/build_layers.py` (or `make deploy`)",
            self.policy_file: f"pass another one with `-c {CONTEXT_POLICY_FILE}=PATH`",
            self.tokenizers_dir / "tiktoken": "the tiktoken BPE files ship in the repository",
            self.core_dir / "python" / "paymaster": "the core package ships in the repository",
            self.gateway_code_dir / "run.sh": "the gateway entry point ships in the repository",
            self.settlement_retry_code_dir / "app.py": "the settlement-retry entry point ships in the repository",
            self.ledger_code_dir / "app.py": "the ledger entry point ships in the repository",
            self.ledger_denials_code_dir / "app.py": "the denials ledger entry point ships in the repository",
            self.sweeper_code_dir / "app.py": "the sweeper entry point ships in the repository",
            self.forecast_code_dir / "app.py": "the forecast entry point ships in the repository",
            self.digest_code_dir / "app.py": "the digest entry point ships in the repository",
            self.month_close_code_dir / "app.py": "the month-close entry point ships in the repository",
            self.budget_alarm_code_dir / "app.py": "the budget-alarm entry point ships in the repository",
        }
        missing = [f"{path}: {fix}" for path, fix in expected.items() if not path.exists()]
        if missing:
            raise ConfigError("missing inputs:\n  " + "\n  ".join(missing))
        # The gateway loads the same file at cold start: refuse to deploy one it would reject.
        try:
            return load_policy(self.policy_file)
        except PolicyFileError as error:
            raise ConfigError(f"invalid policy file: {error}") from None


def ops_emails(text: str) -> tuple[str, ...]:
    """`a@example.com, b@example.com` → both, checked (syntax only); ConfigError names a bad one."""
    addresses = tuple(part.strip() for part in text.split(",") if part.strip())
    for address in addresses:
        try:
            _EMAIL.validate_python(address)
        except ValidationError:
            raise ConfigError(f"-c {CONTEXT_OPS_EMAILS}: {address!r} is not an email address") from None
    return addresses
