"""Who is calling: an IAM principal, and the team/app/env the policy assigns to it.

Teams are mapped on account + principal kind + name, never on the full ARN: the ARN API Gateway
reports for an assumed role (`arn:aws:sts::111122223333:assumed-role/search-api/i-0abc`) drops the
role's path, so `arn:aws:iam::111122223333:role/apps/search-api` and that session must match.
"""

from dataclasses import dataclass
from typing import Literal

from paymaster.domain.errors import UnknownPrincipalError

PrincipalKind = Literal["role", "user"]


@dataclass(frozen=True, slots=True)
class PrincipalKey:
    account: str
    kind: PrincipalKind
    name: str

    def __str__(self) -> str:
        return f"{self.account}:{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity every later step (admission, metering, events) uses."""

    team: str
    app: str
    env: str
    principal: str  # the principal's name in the policy
    arn: str  # the ARN as IAM reported it, for logs and events


def principal_key(arn: str) -> PrincipalKey:
    """The matching key of an IAM role, IAM user or assumed-role session ARN.

    >>> principal_key("arn:aws:sts::111122223333:assumed-role/search-api/session-1")
    PrincipalKey(account='111122223333', kind='role', name='search-api')
    >>> principal_key("arn:aws:iam::111122223333:role/apps/search-api")
    PrincipalKey(account='111122223333', kind='role', name='search-api')

    Anything else (root, federated users, malformed) raises UnknownPrincipalError.
    """
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not parts[4].isdigit():
        raise UnknownPrincipalError(f"{arn!r} is not an IAM role, user or assumed-role ARN")
    _, _, service, _, account, resource = parts
    kind, _, rest = resource.partition("/")
    segments = rest.split("/")
    if service == "iam" and kind in ("role", "user") and segments[-1]:
        return PrincipalKey(account, "role" if kind == "role" else "user", segments[-1])
    if service == "sts" and kind == "assumed-role" and len(segments) == 2 and segments[0]:
        return PrincipalKey(account, "role", segments[0])
    raise UnknownPrincipalError(f"{arn!r} is not an IAM role, user or assumed-role ARN")
