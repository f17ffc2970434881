"""Chat completions: identify the model, plan the call, call the provider.

Two steps so that every refusal happens before an HTTP response starts: `plan` raises for
anything the caller must be told with a status code (unknown model, and — from the enforcement
work on — limits and budgets); `complete` / `stream` then call the provider.
"""

from collections.abc import Generator, Mapping
from dataclasses import dataclass

from paymaster.domain.chat import ChatRequest, Completion, StreamEvent
from paymaster.domain.identity import Caller
from paymaster.domain.policy import Deployment, Model, Policy
from paymaster.ports import ChatProvider, ProviderCall


@dataclass(frozen=True, slots=True)
class Plan:
    caller: Caller
    request: ChatRequest
    model: Model
    provider: str  # the policy's name for the provider serving `deployment`
    call: ProviderCall

    @property
    def deployment(self) -> Deployment:
        return self.call.deployment


class ChatService:
    def __init__(self, policy: Policy, providers: Mapping[str, ChatProvider]) -> None:
        self._policy = policy
        self._providers = providers

    def plan(self, caller: Caller, request: ChatRequest) -> Plan:
        model = self._policy.model_for(caller.team, request.model)
        deployment = model.deployments[0]
        limit = min(request.output_limit or model.max_output_tokens, model.max_output_tokens)
        return Plan(
            caller=caller,
            request=request,
            model=model,
            provider=deployment.provider,
            call=ProviderCall(request=request, deployment=deployment, max_output_tokens=limit),
        )

    def complete(self, plan: Plan) -> Completion:
        return self._providers[plan.provider].complete(plan.call)

    def stream(self, plan: Plan) -> Generator[StreamEvent, None, None]:
        return self._providers[plan.provider].stream(plan.call)

    def models(self, caller: Caller) -> list[str]:
        return self._policy.models_for(caller.team)
