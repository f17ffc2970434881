"""Chat completions: admit, call the provider, settle — on every exit path.

Two steps so that every refusal happens before an HTTP response starts: `plan` raises for
anything the caller must be told with a status code (unknown model, a rule that refuses, the
counter store down for a closed rule); `complete` / `stream` then call the provider and settle
whatever happens: success (actual usage), provider error before any output (released), output
without usage — a cut stream, a client gone — (charged the whole reservation, flagged).
"""

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from datetime import datetime

from paymaster.domain.chat import ChatRequest, Completion, StreamEvent, TextDelta, Usage, UsageReported
from paymaster.domain.errors import ProviderError, StoreUnavailableError
from paymaster.domain.identity import Caller
from paymaster.domain.policy import Deployment, Policy
from paymaster.ports import ChatProvider, CounterState, ProviderCall
from paymaster.services.admission import Admission, AdmissionService


@dataclass(frozen=True, slots=True)
class BudgetView:
    as_of: datetime
    counters: dict[tuple[str, str], CounterState]


@dataclass(frozen=True, slots=True)
class Plan:
    caller: Caller
    request: ChatRequest
    admission: Admission
    provider: str  # the policy's name for the provider serving `deployment`
    call: ProviderCall

    @property
    def deployment(self) -> Deployment:
        return self.call.deployment


class ChatService:
    def __init__(self, policy: Policy, providers: Mapping[str, ChatProvider], admission: AdmissionService) -> None:
        self._policy = policy
        self._providers = providers
        self._admission = admission

    def plan(
        self, caller: Caller, request: ChatRequest, request_id: str, metadata: Mapping[str, str] | None = None
    ) -> Plan:
        admission = self._admission.admit(caller, request, request_id, metadata)
        deployment = admission.model.deployments[0]
        return Plan(
            caller=caller,
            request=request,
            admission=admission,
            provider=deployment.provider,
            call=ProviderCall(request=request, deployment=deployment, max_output_tokens=admission.max_output_tokens),
        )

    def complete(self, plan: Plan) -> Completion:
        try:
            completion = self._providers[plan.provider].complete(plan.call)
        except ProviderError:
            self._admission.settle(plan.admission, None, output_delivered=False)
            raise
        except BaseException:
            # Unknown whether the provider billed: keep the whole hold, flagged.
            self._admission.settle(plan.admission, None, output_delivered=True)
            raise
        self._admission.settle(plan.admission, completion.usage, output_delivered=True)
        return completion

    def stream(self, plan: Plan) -> Generator[StreamEvent, None, None]:
        usage: Usage | None = None
        delivered = False
        try:
            for event in self._providers[plan.provider].stream(plan.call):
                if isinstance(event, TextDelta):
                    delivered = True
                elif isinstance(event, UsageReported):
                    usage = event.usage
                yield event
        finally:
            self._admission.settle(plan.admission, usage, output_delivered=delivered)

    def answer(
        self, caller: Caller, request: ChatRequest, request_id: str, metadata: Mapping[str, str] | None = None
    ) -> tuple[Plan, Completion, BudgetView]:
        """A non-streamed request start to end: admit, call, settle, and the budgets' view."""
        plan = self.plan(caller, request, request_id, metadata)
        completion = self.complete(plan)
        return plan, completion, self.budgets(plan)

    def open_stream(
        self, caller: Caller, request: ChatRequest, request_id: str, metadata: Mapping[str, str] | None = None
    ) -> tuple[Plan, StreamEvent | None, Generator[StreamEvent, None, None], BudgetView]:
        """Admits and pulls the first event, so a provider that fails at once is a status code."""
        plan = self.plan(caller, request, request_id, metadata)
        events = self.stream(plan)
        first = next(events, None)
        return plan, first, events, self.budgets(plan)

    def budgets(self, plan: Plan) -> BudgetView:
        """The held budgets' values for the headers: informational, so a store that cannot answer
        now means no headers, not a failed request."""
        if not plan.admission.held:
            return BudgetView(plan.admission.now, {})
        try:
            return BudgetView(*self._admission.budget_counters(plan.admission))
        except StoreUnavailableError:
            return BudgetView(plan.admission.now, {})

    def models(self, caller: Caller) -> list[str]:
        return self._policy.models_for(caller.team)
