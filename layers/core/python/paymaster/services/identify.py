"""Who is calling: the authenticator finds the IAM principal, the policy names its team."""

from paymaster.domain.identity import Caller
from paymaster.domain.policy import Policy
from paymaster.ports import Authenticator, HttpRequest


class IdentifyService:
    def __init__(self, authenticator: Authenticator, policy: Policy) -> None:
        self._authenticator = authenticator
        self._policy = policy

    def identify(self, request: HttpRequest) -> Caller:
        return self._policy.caller(self._authenticator.principal_arn(request))
