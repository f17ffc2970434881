"""One deployment of paymaster: which account and region, which policy file, and how the API is
shaped there — one validated YAML file per environment (`deploy/<env>.yaml`, see
`deploy/example.yaml`). `make deploy ENV=prod` deploys `deploy/prod.yaml`; several accounts are
several files.

The app reads the file from the context key `deployFile` (`python infra/app.py -c
deployFile=deploy/prod.yaml`, which `make synth ENV=prod` runs); without it, the app deploys the
demo policy, env-agnostic, with `DeployFile.defaults()`.

    python -m paymaster_infra.deploy_file check deploy/prod.yaml            # from infra/
    python -m paymaster_infra.deploy_file get deploy/prod.yaml require_approval
"""

import re
import sys
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, field_validator, model_validator

# CloudWatch Logs accepts these retention periods only (PutRetentionPolicy).
RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)

AccountId = Annotated[str, Field(pattern=r"^\d{12}$")]
_REGION = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$"
_ORG_ID = r"^o-[a-z0-9]{10,32}$"
# An organizational unit path as aws:PrincipalOrgPaths compares it: o-…/r-…/ou-…/ (each OU below the root).
_OU_PATH = r"^o-[a-z0-9]{10,32}/r-[a-z0-9]{4,32}(/ou-[a-z0-9]{4,32}-[a-z0-9]{8,32})+/$"
_CERTIFICATE_ARN = r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$"
_DOMAIN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Throttling(_Strict):
    """API Gateway's stage-wide ceiling (every caller together); per-team limits are the
    gateway's. A request over it gets a 429 in OpenAI's shape, which SDKs retry."""

    rate_per_s: float = Field(default=100, gt=0)
    burst: int = Field(default=200, gt=0)


class AllowedCallers(_Strict):
    """Who may call the API at all, besides holding `execute-api:Invoke`: principals in the
    organization, in one of the organizational units, or in one of the accounts. All empty: no
    resource policy, so any principal of this account whose IAM policy allows it (and no other
    account) may call."""

    organization_id: str | None = Field(default=None, pattern=_ORG_ID)
    organizational_unit_paths: list[Annotated[str, Field(pattern=_OU_PATH)]] = Field(default_factory=list)
    accounts: list[AccountId] = Field(default_factory=list)

    @property
    def restricted(self) -> bool:
        return bool(self.organization_id or self.organizational_unit_paths or self.accounts)


class LogRetention(_Strict):
    """Days CloudWatch Logs keeps each log group (one of CloudWatch's allowed values)."""

    access_logs_days: int = 90
    function_logs_days: int = 90

    @field_validator("access_logs_days", "function_logs_days")
    @classmethod
    def _allowed(cls, days: int) -> int:
        if days not in RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs keeps logs one of {sorted(RETENTION_DAYS)} days, not {days}")
        return days


class HostedZone(_Strict):
    """A Route 53 public hosted zone: given, the stack adds an alias record for the domain."""

    id: str = Field(pattern=r"^Z[A-Z0-9]{1,31}$")
    name: str = Field(pattern=_DOMAIN)


class CustomDomain(_Strict):
    """A regional custom domain for the API (`https://<domain_name>/v1`), with an ACM certificate
    in the deployment's region that covers it."""

    domain_name: str = Field(pattern=_DOMAIN)
    certificate_arn: str = Field(pattern=_CERTIFICATE_ARN)
    hosted_zone: HostedZone | None = None

    @model_validator(mode="after")
    def _domain_in_zone(self) -> "CustomDomain":
        zone = self.hosted_zone
        if zone is not None and not (self.domain_name == zone.name or self.domain_name.endswith("." + zone.name)):
            raise ValueError(f"domain_name {self.domain_name} is not in hosted_zone {zone.name}")
        return self


class DeployFile(_Strict):
    """Everything one deployment may choose; every field but `account`, `region` and `policy_file`
    has today's default."""

    account: AccountId
    region: str = Field(pattern=_REGION)
    policy_file: Path
    """Relative to the repository root."""
    throttling: Throttling = Field(default_factory=Throttling)
    allowed_callers: AllowedCallers = Field(default_factory=AllowedCallers)
    log_retention: LogRetention = Field(default_factory=LogRetention)
    custom_domain: CustomDomain | None = None
    gateway_reserved_concurrency: int | None = Field(default=None, ge=1)
    """Executions reserved for the gateway (and its ceiling); none: it shares the account's pool."""
    require_approval: Literal["never", "any-change", "broadening"] = "broadening"
    """`cdk deploy --require-approval`: `never` for unattended deploys (CI)."""
    ops_emails: list[EmailStr] = []
    """The platform team's addresses on the ops topic (the operational alarms); each confirms once."""

    @field_validator("policy_file")
    @classmethod
    def _relative(cls, path: Path) -> Path:
        if path.is_absolute():
            raise ValueError("give the policy file relative to the repository root")
        return path


class Defaults(_Strict):
    """The deployment without a file: today's behaviour (no account or region of its own)."""

    throttling: Throttling = Field(default_factory=Throttling)
    allowed_callers: AllowedCallers = Field(default_factory=AllowedCallers)
    log_retention: LogRetention = Field(default_factory=LogRetention)
    custom_domain: CustomDomain | None = None
    gateway_reserved_concurrency: int | None = None


Deployment = DeployFile | Defaults


class DeployFileError(Exception):
    """The file cannot be used; each problem names its field (`throttling.burst: …`)."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: invalid deploy file\n  " + "\n  ".join(problems))
        self.problems = problems


def load_deploy_file(path: Path) -> DeployFile:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise DeployFileError(path, [f"cannot be read: {error.strerror}"]) from None
    except yaml.YAMLError as error:
        raise DeployFileError(path, [f"is not YAML: {error}"]) from None
    if not isinstance(data, dict):
        raise DeployFileError(path, ["must be a mapping of fields (see deploy/example.yaml)"])
    try:
        return DeployFile.model_validate(data)
    except ValidationError as error:
        raise DeployFileError(path, [_problem(e) for e in error.errors()]) from None


def _problem(error: object) -> str:
    assert isinstance(error, dict)
    where = ".".join(str(part) for part in error["loc"]) or "(file)"
    message = str(error["msg"])
    if error["type"] == "string_pattern_mismatch":
        message = f"{error['input']!r} does not match {error.get('ctx', {}).get('pattern')}"
    elif error["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{where}: {re.sub(r'^Value error, ', '', message)}"


def main(argv: list[str]) -> int:
    """`check FILE` (exit 1 with each problem) or `get FILE FIELD` (print one top-level value)."""
    if len(argv) < 2 or argv[0] not in ("check", "get") or (argv[0] == "get" and len(argv) != 3):
        print("usage: deploy_file check FILE | get FILE FIELD", file=sys.stderr)
        return 2
    try:
        deploy = load_deploy_file(Path(argv[1]))
    except DeployFileError as error:
        print(error, file=sys.stderr)
        return 1
    if argv[0] == "get":
        print(getattr(deploy, argv[2]))
    else:
        print(f"{argv[1]}: valid — account {deploy.account}, region {deploy.region}, policy {deploy.policy_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
