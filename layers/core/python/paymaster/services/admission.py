"""Admission and settlement: hold the most a request can use, before the provider is called;
replace the hold by the actual use afterwards, on every exit path.

Admission is one store request in the common case. It takes another only when the first was
refused in a way the gateway can answer better than with a refusal:

    a budget past its downgrade threshold   → plan the cheaper model and hold again
    a shadow rule that would refuse         → log it, count it unchecked and hold again
    a budget that cannot afford max_tokens  → shrink max_tokens to what it affords (down to
                                              MIN_USEFUL_OUTPUT_TOKENS) and hold again
"""

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from aws_lambda_powertools import Logger

from paymaster.domain.audit import PromptRecord
from paymaster.domain.chat import ChatRequest, Usage
from paymaster.domain.embeddings import EmbeddingRequest
from paymaster.domain.embeddings import input_tokens as embedding_input_tokens
from paymaster.domain.errors import (
    BudgetExhaustedError,
    RateLimitedError,
    StoreOutcomeUnknownError,
    StoreUnavailableError,
)
from paymaster.domain.estimate import input_tokens
from paymaster.domain.identity import Caller
from paymaster.domain.limits import (
    MIN_USEFUL_OUTPUT_TOKENS,
    RESERVATION_LIFETIME,
    Hold,
    Refusal,
    RequestFacts,
    actual_amount,
    actual_cost,
    affordable_output_tokens,
    amount_text,
    downgrade_threshold,
    matches,
    max_cost,
    plan_holds,
    reserve_amount,
    tightest,
)
from paymaster.domain.metering import Bill, Delivered, Outcome, Reported, Unknown, believed, delivered_output_tokens
from paymaster.domain.policy import Model, Policy, Rule
from paymaster.ports import (
    Asked,
    CallRecord,
    Clock,
    CounterChange,
    CounterState,
    CounterStore,
    Reservation,
    Settlement,
    SettlementQueue,
    TokenCounter,
)

logger = Logger(service="paymaster")

BUDGET_VIEW_MAX_AGE = timedelta(seconds=1)
MAX_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class Admission:
    """A request the rules admitted: what to call, with which output limit, and what is held."""

    request_id: str
    model_name: str
    model: Model
    input_tokens: int
    max_output_tokens: int
    holds: tuple[Hold, ...]
    now: datetime
    held: bool = True  # False when admitted without the store (on_store_error: open, or no rule)
    downgraded_from: str | None = None


@dataclass(frozen=True, slots=True)
class RuleUsage:
    """One rule as `GET /v1/usage` reports it, in the rule's unit (USD strings for cost)."""

    rule: str
    unit: str
    scope: str
    window: str
    limit: str
    used: str
    reserved: str
    remaining: str
    resets_at: str


class AdmissionService:
    """`queue` keeps what the store could not take now (a settlement, a release) until it lands."""

    def __init__(
        self, policy: Policy, store: CounterStore, count: TokenCounter, clock: Clock, queue: SettlementQueue
    ) -> None:
        self._policy = policy
        self._store = store
        self._queue = queue
        self._count = count
        self._clock = clock
        self._budget_view: dict[tuple[str, str], tuple[datetime, CounterState]] = {}
        self._budget_view_lock = threading.Lock()

    def admit(
        self,
        caller: Caller,
        request: ChatRequest | EmbeddingRequest,
        request_id: str,
        metadata: Mapping[str, str] | None = None,
        *,
        fallback_to: str | None = None,
    ) -> Admission:
        """Holds the request's maximum use on every matching counter, or raises the tightest refusal.

        `fallback_to`: hold for this model instead of the one the caller named (a fallback the
        policy chose, so neither the team's model list nor a downgrade applies to it). Only chat
        is downgraded: an embeddings request cannot move to a chat model.
        """
        now = self._clock()
        chat = isinstance(request, ChatRequest)
        if fallback_to is None:
            model_name = request.model
            model = self._policy.model_for(caller.team, model_name, "chat" if chat else "embeddings")
        else:
            model_name, model = fallback_to, self._policy.models[fallback_to]
        asked = request.output_limit if isinstance(request, ChatRequest) else None
        may_downgrade = chat and fallback_to is None
        facts = RequestFacts(caller.team, caller.app, caller.env, model_name, request.user, metadata or {})
        prompt = self._input_tokens(request, model)
        output = _output_tokens(model, asked)
        downgraded_from: str | None = None
        unchecked: frozenset[str] = frozenset()
        enforced: list[Refusal] = []

        for _ in range(MAX_ATTEMPTS):
            holds = plan_holds(
                self._policy.rules,
                facts,
                model,
                input_tokens=prompt,
                output_tokens=output,
                now=now,
                check_downgrades=may_downgrade and downgraded_from is None,
                unchecked=unchecked,
            )
            admission = Admission(
                request_id, model_name, model, prompt, output, tuple(holds), now, downgraded_from=downgraded_from
            )
            # A request no rule matches is reserved too, holding nothing: its settlement is then
            # the write the ledger reads, as for any other call (one request each, 2 write units).
            reservation = Reservation(
                request_id,
                tuple(holds),
                now + RESERVATION_LIFETIME,
                caller.team,
                caller.app,
                model_name,
                Asked(
                    now,
                    caller.arn,
                    caller.env,
                    request.user,
                    tuple(sorted(facts.metadata.items())),
                    int(max_cost(model, prompt, output)),
                    downgraded_from,
                ),
            )
            try:
                refusals = self._store.reserve(reservation)
            except StoreOutcomeUnknownError:
                # The hold may be in place although the store never said so; the request goes on
                # without it (or is refused), so it must not stay: release it, fencing the id.
                self._apply(_release_unknown(reservation))
                return self._without_store(caller, admission, holds)
            except StoreUnavailableError:
                return self._without_store(caller, admission, holds)
            if not refusals:
                return admission

            shadow = [refusal for refusal in refusals if refusal.rule.mode == "shadow"]
            enforced = [refusal for refusal in refusals if refusal.rule.mode == "enforce"]
            for refusal in shadow:
                logger.warning("shadow rule would refuse", extra=_refusal_log(refusal, request_id))
            unchecked |= {refusal.rule.name for refusal in shadow}
            if not enforced:
                continue

            cheaper = _downgrade(enforced)
            if cheaper is not None and may_downgrade and downgraded_from is None:
                logger.info("downgrading", extra={"request_id": request_id, "from": model_name, "to": cheaper})
                downgraded_from, model_name = model_name, cheaper
                model = self._policy.models[cheaper]
                facts = replace(facts, model=model_name)
                prompt = self._input_tokens(request, model)
                output = _output_tokens(model, asked)
                continue

            affordable = affordable_output_tokens(enforced, model, prompt)
            if min(asked or MIN_USEFUL_OUTPUT_TOKENS, MIN_USEFUL_OUTPUT_TOKENS) <= affordable < output:
                output = affordable
                continue
            raise _refusal_error(tightest(enforced), now)
        # Each attempt above changes something (model, max_tokens, unchecked shadow rules); racing
        # requests can still take the room each time. The last enforced refusal stands.
        if not enforced:
            raise StoreUnavailableError(f"Could not reserve for request {request_id} in {MAX_ATTEMPTS} attempts.")
        raise _refusal_error(tightest(enforced), now)

    def settle(
        self, admission: Admission, outcome: Outcome, call: CallRecord | None = None, audit: PromptRecord | None = None
    ) -> Bill:
        """Replaces the hold by what the request used (see `metering` for each outcome) and says
        what it was charged. Every charge without the provider's usage is flagged. `call`: how
        it was served, for the ledger; `audit`: the prompt record written with the settlement
        (none is written for a request admitted without the store: there is no settlement)."""
        model = admission.model
        flags: list[str] = []
        usage: Usage | None = None
        charged: Usage | None = None  # the tokens charged when they are not the provider's
        if (trusted := believed(outcome, admission.input_tokens)) is not outcome:
            flags.append("usage_reported_no_input")
            logger.warning("the provider reported no input tokens", extra={"request_id": admission.request_id})
            outcome = trusted
        settled: Literal["settled", "released", "charged_delivered", "charged_reservation"]
        if isinstance(outcome, Reported):
            usage = outcome.usage
            bill = Bill(usage, int(actual_cost(model, usage)), "provider_usage")
            amounts = [actual_amount(hold.rule, model, usage) for hold in admission.holds]
            if any(amount > hold.amount for amount, hold in zip(amounts, admission.holds, strict=True)):
                flags.append("estimate_exceeded")
                logger.warning("actual use exceeded the reservation", extra={"request_id": admission.request_id})
            settled = "settled"
        elif isinstance(outcome, Delivered):
            counted = self._count(outcome.text, model.tokenizer) if outcome.text else 0
            output = delivered_output_tokens(counted, model.input_token_factor, admission.max_output_tokens)
            charged = Usage(admission.input_tokens, output)
            bill = Bill(charged, int(max_cost(model, charged.input_tokens, output)), "delivered_text")
            amounts = [reserve_amount(hold.rule, model, admission.input_tokens, output) for hold in admission.holds]
            flags.append("usage_from_delivered_text")
            settled = "charged_delivered"
        elif isinstance(outcome, Unknown):
            charged = Usage(admission.input_tokens, admission.max_output_tokens)
            bill = Bill(charged, int(max_cost(model, charged.input_tokens, charged.output_tokens)), "reservation")
            amounts = [hold.amount for hold in admission.holds]
            flags.append("usage_unknown")
            settled = "charged_reservation"
        else:
            bill = Bill(Usage(0, 0), 0, "released")
            amounts = [0 for _ in admission.holds]
            settled = "released"
        if usage is None and flags:
            logger.warning(
                "charged without the provider's usage",
                extra={"request_id": admission.request_id, "basis": bill.basis, "cost": bill.cost},
            )
        if not admission.held:
            return bill
        changes = tuple(
            CounterChange(hold.pk, hold.sk, delta=amount - hold.amount, spent=amount)
            for hold, amount in zip(admission.holds, amounts, strict=True)
        )
        self._apply(
            Settlement(
                admission.request_id,
                changes,
                settled,
                bill.cost,
                usage,
                tuple(flags),
                billed_on=bill.basis,
                call=call,
                audit=audit,
                charged=charged,
            )
        )
        return bill

    def _apply(self, settlement: Settlement) -> None:
        """Settles now, or — when the store cannot take it now — queues it to be applied later:
        a settlement is idempotent per request id, so a late or repeated one counts once."""
        try:
            if not self._store.settle(settlement):
                logger.info("already settled", extra={"request_id": settlement.request_id})
        except StoreUnavailableError as error:
            logger.warning(
                "settlement queued: the counter store cannot take it now",
                extra={"request_id": settlement.request_id, "outcome": settlement.outcome, "error": error.message},
            )
            self._queue.put(settlement)

    def sweep(self, limit: int = 100) -> int:
        """Charges holds that outlived RESERVATION_LIFETIME at their reservation, flagged
        `expired_unsettled`: the process died between reserve and settle, and the provider may
        have billed the call — never $0 by accident (docs/COUNTERS.md). Idempotent."""
        swept = 0
        for held in self._store.expired(self._clock(), limit):
            settlement = Settlement(
                held.request_id,
                held.charged_in_full(),
                "expired",
                held.reserved,
                None,
                ("expired_unsettled",),
                billed_on="reservation",
            )
            if self._store.settle(settlement):
                swept += 1
                logger.warning(
                    "expired reservation charged", extra={"request_id": held.request_id, "cost": held.reserved}
                )
        return swept

    def usage(self, caller: Caller, user: str | None = None) -> list[RuleUsage]:
        """Every rule that can apply to the caller's team/app/env, with its current window."""
        now = self._clock()
        entries: list[tuple[Rule, RequestFacts, Hold]] = []
        for rule in self._policy.rules:
            models = rule.when.model or self._policy.models_for(caller.team)
            for model in models if "model" in rule.per else models[:1]:
                facts = RequestFacts(caller.team, caller.app, caller.env, model, user)
                if not matches(rule.when.model_copy(update={"model": None, "user": None, "metadata": {}}), facts):
                    continue
                (hold,) = plan_holds(
                    [rule], facts, self._policy.models[model], input_tokens=0, output_tokens=0, now=now,
                    check_downgrades=False,
                )  # fmt: skip
                entries.append((rule, facts, hold))
        states = self._store.counters([(hold.pk, hold.sk) for _, _, hold in entries])
        return [_rule_usage(rule, hold, states[(hold.pk, hold.sk)]) for rule, _, hold in entries]

    def budget_counters(self, admission: Admission) -> tuple[datetime, dict[tuple[str, str], CounterState]]:
        """The budgets this admission holds, for the remaining-budget headers, and as of when.

        Informational, so read at most once per BUDGET_VIEW_MAX_AGE per budget and container: a
        busy container answers from its last read instead of adding a store request to every
        response. Enforcement never uses this view; admission's conditions are exact.
        """
        now = self._clock()
        keys = [(hold.pk, hold.sk) for hold in admission.holds if hold.rule.is_budget]
        with self._budget_view_lock:
            stale = [
                key
                for key in keys
                if key not in self._budget_view or now - self._budget_view[key][0] > BUDGET_VIEW_MAX_AGE
            ]
        if stale:
            fresh = self._store.counters(stale)
            with self._budget_view_lock:
                self._budget_view.update({key: (now, state) for key, state in fresh.items()})
        with self._budget_view_lock:
            views = {key: self._budget_view[key] for key in keys if key in self._budget_view}
        as_of = min((seen for seen, _ in views.values()), default=now)
        return as_of, {key: state for key, (_, state) in views.items()}

    def _input_tokens(self, request: ChatRequest | EmbeddingRequest, model: Model) -> int:
        def count(text: str) -> int:
            return self._count(text, model.tokenizer)

        if isinstance(request, EmbeddingRequest):
            return embedding_input_tokens(request, count, model.input_token_factor)
        return input_tokens(request, count, model.input_token_factor)

    def _without_store(self, caller: Caller, admission: Admission, holds: list[Hold]) -> Admission:
        closed = [hold.rule.name for hold in holds if hold.rule.mode == "enforce" and hold.rule.fails_closed]
        if closed:
            logger.error(
                "counter store unavailable: refusing", extra={"request_id": admission.request_id, "rules": closed}
            )
            raise StoreUnavailableError(
                f"The counter store is unavailable and rule(s) {', '.join(closed)} refuse without it; "
                "try again shortly."
            )
        logger.error(
            "counter store unavailable: admitting without holds (on_store_error: open)",
            extra={"request_id": admission.request_id, "rules": [hold.rule.name for hold in holds]},
        )
        return replace(admission, held=False)


def _release_unknown(reservation: Reservation) -> Settlement:
    """Returns every hold `reservation` may have made; fences its id if it made none."""
    changes = tuple(CounterChange(hold.pk, hold.sk, delta=-hold.amount, spent=0) for hold in reservation.holds)
    return Settlement(reservation.request_id, changes, "released", 0, None, ("admission_outcome_unknown",), fence=True)


def _output_tokens(model: Model, asked: int | None) -> int:
    """The output to hold for: what the caller asked, at most the model's limit; embeddings none."""
    if model.kind == "embeddings":
        return 0
    return min(asked or model.max_output_tokens, model.max_output_tokens)


def _downgrade(refusals: list[Refusal]) -> str | None:
    """The cheaper model, if every refusal came from a budget capped at its downgrade threshold.

    Such a budget is past the threshold whether or not the dearer model would still fit under
    its limit: the request moves to the cheaper model, where it may fit (or shrink) again.
    """
    targets = [downgrade_threshold(refusal.rule) for refusal in refusals]
    if not targets or any(target is None for target in targets):
        return None
    first = targets[0]
    assert first is not None
    return first[1]


def _refusal_error(refusal: Refusal, now: datetime) -> RateLimitedError | BudgetExhaustedError:
    rule = refusal.rule
    limit, used = amount_text(rule, rule.cap), amount_text(rule, refusal.used)
    remaining = amount_text(rule, refusal.remaining)
    unit = rule.unit.replace("_", " ").replace("cost per", "USD per")
    detail = (
        f"rule `{rule.name}` ({refusal.hold.bucket}): limit {limit} {unit}, used {used}, remaining {remaining}, "
        f"this request needs up to {amount_text(rule, refusal.hold.amount)}; "
        f"resets at {refusal.hold.window.end.isoformat()}."
    )
    if refusal.kind == "budget":
        return BudgetExhaustedError(f"Budget exhausted: {detail}", refusal, now)
    return RateLimitedError(f"Rate limit reached: {detail}", refusal, now)


def _refusal_log(refusal: Refusal, request_id: str) -> dict[str, object]:
    return {"request_id": request_id, "rule": refusal.rule.name, "bucket": refusal.hold.bucket, "used": refusal.used}


def _rule_usage(rule: Rule, hold: Hold, state: CounterState) -> RuleUsage:
    reserved = state.committed - state.spent
    return RuleUsage(
        rule=rule.name,
        unit=rule.unit,
        scope=hold.bucket,
        window=hold.window.id,
        limit=amount_text(rule, rule.cap),
        used=amount_text(rule, state.spent),
        reserved=amount_text(rule, reserved),
        remaining=amount_text(rule, max(0, rule.cap - state.committed)),
        resets_at=hold.window.end.isoformat(),
    )
