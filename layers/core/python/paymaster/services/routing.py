"""Serving one request along its route: admit, try each hop, move the hold, settle.

Shared by chat and embeddings. The route (`domain.routing`) is walked while a deployment fails
before the provider accepted the call — a refusal, a 5xx, a timeout, as the model's
`fallback_on` allows. Deployments of one model share the hold; a fallback model is held at its
own price first: the failed hold is released, the fallback's reserved (`<request id>~<hop>`),
and a fallback the rules refuse ends the walk with the provider's error, which says so.
"""

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

from aws_lambda_powertools import Logger

from paymaster import schema
from paymaster.domain.audit import Output, prompt_record
from paymaster.domain.chat import ChatRequest, Usage
from paymaster.domain.embeddings import EmbeddingRequest
from paymaster.domain.errors import (
    GatewayFailureError,
    InvalidRequestError,
    LimitRefusedError,
    ProviderError,
    ProviderRejectedError,
    StoreUnavailableError,
)
from paymaster.domain.events import request_denied
from paymaster.domain.identity import Caller
from paymaster.domain.metering import Bill, NotAccepted, Outcome, Reported, Unknown
from paymaster.domain.policy import Deployment, Policy
from paymaster.domain.routing import Hop, may_fall_back, route
from paymaster.ports import CallRecord, CounterState, MetricsSink, RequestMetrics
from paymaster.services.admission import Admission, AdmissionService
from paymaster.services.denials import DenialEvents

logger = Logger(service="paymaster")

T = TypeVar("T")
NOT_ACCEPTED = NotAccepted()


@dataclass(frozen=True, slots=True)
class BudgetView:
    as_of: datetime
    counters: dict[tuple[str, str], CounterState]


@dataclass(slots=True)
class Exchange:
    """One request while it is served: which hold and deployment serve it now, what was tried,
    and — once settled — what it was charged."""

    caller: Caller
    request: ChatRequest | EmbeddingRequest
    request_id: str
    metadata: Mapping[str, str]
    admission: Admission
    route: list[Hop]
    hop: Hop
    tried: list[str] = field(default_factory=list)  # deployment labels, in order
    bill: Bill | None = None
    planned_at: float = 0.0  # the router's monotonic clock, at admission
    first_token_at: float | None = None  # when a stream delivered its first output
    provider_request_id: str | None = None
    output: Output | None = None  # what reached the caller, for an opted-in team's prompt record
    downgraded_from: str | None = None  # the model the caller named, when admission chose a cheaper one
    call: CallRecord | None = None  # as last settled
    provider_errors: list[str] = field(default_factory=list)  # the provider of each failed call

    @property
    def deployment(self) -> Deployment:
        return self.hop.deployment


class Router:
    """`draw` picks among weighted deployments (a float in [0, 1)); `monotonic` times calls;
    `denials` publishes a RequestDenied for each refusal the caller is answered with (None: none);
    `metrics` takes each request's metrics once its outcome is known (None: none)."""

    def __init__(
        self,
        policy: Policy,
        admission: AdmissionService,
        *,
        denials: DenialEvents | None = None,
        metrics: MetricsSink | None = None,
        draw: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._admission = admission
        self._denials = denials
        self._metrics = metrics
        self._draw = draw
        self._monotonic = monotonic

    def plan(
        self,
        caller: Caller,
        request: ChatRequest | EmbeddingRequest,
        request_id: str,
        metadata: Mapping[str, str] | None = None,
    ) -> Exchange:
        """Admits the request; raises what the caller must be told with a status code — a rule's
        refusal once its RequestDenied is published (or given up on: `denials`)."""
        planned_at = self._monotonic()
        try:
            admission = self._admission.admit(caller, request, request_id, metadata)
        except LimitRefusedError as refusal:
            self._denied(caller, request, request_id, refusal.refusal.rule.name)
            if self._denials is not None:
                self._denials.publish(
                    request_denied(
                        refusal,
                        caller,
                        request_id=request_id,
                        model=request.model,
                        user=request.user,
                        metadata=metadata or {},
                    )
                )
            raise
        except StoreUnavailableError:
            # One reason whatever the store's failure was, so that the reasons stay countable.
            self._denied(caller, request, request_id, StoreUnavailableError.code)
            raise
        hops = self._servable(route(self._policy, admission.model_name, self._draw), request, admission)
        return Exchange(
            caller,
            request,
            request_id,
            dict(metadata or {}),
            admission,
            hops,
            hops[0],
            planned_at=planned_at,
            downgraded_from=admission.downgraded_from,
        )

    def walk(self, exchange: Exchange, attempt: Callable[[Hop], T]) -> T:
        """`attempt` on each hop of the route until one succeeds or a failure may not move on."""
        failed: ProviderError | None = None  # the previous hop's failure
        for index, hop in enumerate(exchange.route):
            if failed is not None and hop.model_name != exchange.admission.model_name:
                self._hold_for_fallback(exchange, hop, index, failed)
            exchange.hop = hop
            exchange.tried.append(hop.deployment.label)
            try:
                return attempt(hop)
            except ProviderError as error:
                exchange.provider_request_id = error.provider_request_id
                self.provider_failed(exchange, error)
                last = index == len(exchange.route) - 1
                moving_on = not last and may_fall_back(error, hop.model)
                logger.warning(
                    "deployment failed",
                    extra={
                        "request_id": exchange.request_id,
                        "deployment": hop.deployment.label,
                        "error": error.code,
                        "status": error.status,
                        "provider_request_id": error.provider_request_id,
                        "next": exchange.route[index + 1].deployment.label if moving_on else None,
                    },
                )
                if not moving_on:
                    error.message = _naming_deployments(error.message, exchange.tried)
                    raise
                failed = error
        raise AssertionError("a route has at least one hop")  # pragma: no cover - the policy guarantees it

    def serve(self, exchange: Exchange, attempt: Callable[[Hop], T], usage_of: Callable[[T], Usage | None]) -> T:
        """A call answered in one piece: walk the route, then settle whatever happened.

        A provider error is released unless the provider had accepted the call (then the whole
        hold: its answer is unknown); an adapter's InvalidRequestError sent nothing (released);
        anything else may have reached the provider (the whole hold, as a GatewayFailureError);
        an answer without usage is charged the whole hold. An error carries its bill.
        """
        started = self._monotonic()
        try:
            try:
                answer = self.walk(exchange, attempt)
            except ProviderError as error:
                error.bill = self.settle(exchange, Unknown() if error.accepted else NOT_ACCEPTED)
                raise
            except InvalidRequestError as error:
                error.bill = self.settle(exchange, NOT_ACCEPTED)
                raise
            except Exception as error:
                raise self.unforeseen(exchange, error) from error
            except BaseException:
                self.settle(exchange, Unknown())
                raise
            usage = usage_of(answer)
            self.settle(exchange, Unknown() if usage is None else Reported(usage))
            self.log_served(exchange, self._monotonic() - started)
            return answer
        finally:
            self.measure(exchange)

    def unforeseen(self, exchange: Exchange, error: Exception) -> GatewayFailureError:
        """An error nobody planned for, after admission: logged, settled as the whole hold (the
        provider may have billed), and turned into the 500 that says what was charged."""
        logger.exception("unexpected failure", extra={"request_id": exchange.request_id})
        failure = GatewayFailureError(f"The gateway failed unexpectedly (request {exchange.request_id}).")
        failure.bill = exchange.bill if exchange.bill is not None else self.settle(exchange, Unknown())
        return failure

    def provider_failed(self, exchange: Exchange, error: ProviderError) -> None:
        """Counts a failed call against the provider of the deployment that made it; one the
        provider refused as invalid is the caller's to fix, not the provider's failure."""
        if not isinstance(error, ProviderRejectedError):
            exchange.provider_errors.append(exchange.deployment.provider)

    def measure(self, exchange: Exchange) -> None:
        """Emits the request's metrics, once it is settled for good (answered, failed or cut)."""
        if self._metrics is None:
            return
        call = exchange.call
        self._metrics.emit(
            RequestMetrics(
                team=exchange.caller.team,
                app=exchange.caller.app,
                env=exchange.caller.env,
                model=exchange.admission.model_name,
                bill=exchange.bill,
                downgraded=exchange.downgraded_from is not None,
                fell_back=len(exchange.tried) > 1,
                provider_errors=tuple(exchange.provider_errors),
                latency_ms=None if call is None else call.latency_ms,
                first_token_ms=None if call is None else call.first_token_ms,
                request_id=exchange.request_id,
            )
        )

    def first_output(self, exchange: Exchange) -> None:
        """A stream's first piece of output reached the gateway: its time to first token."""
        exchange.first_token_at = self._monotonic()

    def settle(self, exchange: Exchange, outcome: Outcome) -> Bill:
        now = self._monotonic()
        first = exchange.first_token_at
        call = CallRecord(
            deployment=exchange.deployment.label,
            tried=tuple(exchange.tried),
            provider_request_id=exchange.provider_request_id,
            latency_ms=_ms(now - exchange.planned_at),
            first_token_ms=None if first is None else _ms(first - exchange.planned_at),
        )
        audit = self._policy.teams[exchange.caller.team].audit
        record = None
        if audit.prompts:
            request_id, hop = schema.split_hop(exchange.admission.request_id)
            record = prompt_record(
                request_id=request_id,
                hop=hop,
                admitted_at=exchange.admission.now,
                caller=exchange.caller,
                model=exchange.admission.model_name,
                deployment=exchange.deployment.label,
                request=exchange.request,
                output=exchange.output,
                audit=audit,
            )
        exchange.call = call
        exchange.bill = self._admission.settle(exchange.admission, outcome, call, record)
        return exchange.bill

    def budgets(self, exchange: Exchange) -> BudgetView:
        """The held budgets' values for the headers: informational, so a store that cannot answer
        now means no headers, not a failed request."""
        if not exchange.admission.held:
            return BudgetView(exchange.admission.now, {})
        try:
            return BudgetView(*self._admission.budget_counters(exchange.admission))
        except StoreUnavailableError:
            return BudgetView(exchange.admission.now, {})

    def log_served(self, exchange: Exchange, elapsed_s: float) -> None:
        """One line for a request that needed a fallback or was charged without usage; debug
        otherwise (API Gateway's access log already has every request)."""
        bill = exchange.bill
        unusual = len(exchange.tried) > 1 or (bill is not None and bill.basis != "provider_usage")
        (logger.info if unusual else logger.debug)(
            "served",
            extra={
                "request_id": exchange.request_id,
                "model": exchange.admission.model_name,
                "deployment": exchange.deployment.label,
                "tried": exchange.tried,
                "cost": bill.cost if bill else None,
                "basis": bill.basis if bill else None,
                "ms": round(elapsed_s * 1000, 1),
            },
        )

    def _denied(self, caller: Caller, request: ChatRequest | EmbeddingRequest, request_id: str, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.emit(
                RequestMetrics(
                    caller.team, caller.app, caller.env, request.model, denied_by=reason, request_id=request_id
                )
            )

    def _servable(self, hops: list[Hop], request: ChatRequest | EmbeddingRequest, admission: Admission) -> list[Hop]:
        """The hops whose provider can take the request: token ids only go to a provider with
        the tokenizer that made them. None left: released, and the request is refused (400)."""
        if not isinstance(request, EmbeddingRequest) or not request.is_tokens:
            return hops
        servable: list[Hop] = []
        refusal: InvalidRequestError | None = None
        for hop in hops:
            try:
                request.check_provider_kind(self._policy.providers[hop.deployment.provider].kind)
            except InvalidRequestError as error:
                refusal = refusal or error
                continue
            servable.append(hop)
        if servable and servable[0].model_name == admission.model_name:
            return servable
        self._admission.settle(admission, NOT_ACCEPTED)
        assert refusal is not None
        raise refusal

    def _hold_for_fallback(self, exchange: Exchange, hop: Hop, index: int, failed: ProviderError) -> None:
        """Releases the failed model's hold and holds the fallback's, at the fallback's price;
        if the rules refuse the fallback, `failed` is raised, saying so."""
        self.settle(exchange, NOT_ACCEPTED)
        exchange.bill = None
        try:
            exchange.admission = self._admission.admit(
                exchange.caller,
                exchange.request,
                schema.hop_id(exchange.request_id, index),
                exchange.metadata,
                fallback_to=hop.model_name,
            )
        except (LimitRefusedError, StoreUnavailableError) as refusal:
            exchange.admission = replace(exchange.admission, held=False)
            failed.message += f" The fallback to `{hop.model_name}` was not admitted: {refusal.message}"
            raise failed from None


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _naming_deployments(message: str, tried: list[str]) -> str:
    """`message` as the caller reads it: which deployment failed last, and which failed before.

    Example: tried [openai/gpt-4o-mini, bedrock/nova] → "Deployment `bedrock/nova` failed: <message>
    (tried before: openai/gpt-4o-mini)".
    """
    before = f" (tried before: {', '.join(tried[:-1])})" if len(tried) > 1 else ""
    return f"Deployment `{tried[-1]}` failed: {message}{before}"
