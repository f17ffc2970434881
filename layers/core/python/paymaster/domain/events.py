"""The events paymaster publishes on its EventBridge bus: the contracts its consumers rely on.

Each event is a frozen model whose JSON is the EventBridge `detail`; `events/published/` holds a
sample of each as a consumer receives it, which the tests hold the models to.

    CostRecorded          one per settled request: what it used and what it was charged
    RequestDenied         one per request a rule refused (429): which rule, and its figures
    ReservationExpired    one per hold a crash left behind, charged when it expired
    MonthClosed           one per team and month: the month's totals, in the team's time zone
    BudgetThresholdCrossed  one per budget, bucket, window and alert threshold its spend reached

`ledger_event(entry, written_at)` is the event a ledger entry publishes (the ledger function's,
from the counters' stream); `request_denied` the gateway's for a refusal.

- Money is integer micro-USD, in fields named `*_usd_micros` (1 USD = 1_000_000).
- Times are ISO-8601 UTC with milliseconds: `2026-11-29T14:03:07.412Z`.
- Every event carries the gateway's `request_id`. Delivery is at least once (a PutEvents whose
  answer was lost is sent again; a stream record delivered twice publishes twice): consumers
  de-duplicate on detail-type + `request_id`.
- `version` is the detail's schema version. Adding a field keeps it; removing, renaming or
  changing the meaning of one bumps it. These models refuse fields they do not know, so that a
  sample and its model cannot drift apart; a consumer outside paymaster should ignore them.
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from paymaster import names
from paymaster.domain.chat import Usage
from paymaster.domain.errors import BudgetExhaustedError, LimitRefusedError
from paymaster.domain.identity import Caller
from paymaster.domain.ledger import DENIED, Denial, LedgerEntry, Totals
from paymaster.domain.policy import Unit


def _in_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a time must carry its time zone")
    return moment.astimezone(UTC)


def _iso_utc(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


UtcTime = Annotated[datetime, AfterValidator(_in_utc), PlainSerializer(_iso_utc, return_type=str)]
# Counts and money: JSON integers only (a "12" or 12.0 is refused, not converted).
Count = Annotated[int, Field(strict=True, ge=0)]
UsdMicros = Annotated[int, Field(strict=True, ge=0)]
# A rule's figures are whatever its counter holds: not checked for sign, so that reporting a
# refusal can never fail on a counter some bug drove below zero.
Amount = Annotated[int, Field(strict=True)]


# What a CostRecorded can say: a charged call's outcomes and bases (a release publishes none).
ChargedOutcome = Literal["settled", "charged_delivered", "charged_reservation"]
ChargedBasis = Literal["provider_usage", "delivered_text", "reservation"]


class _Detail(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PaymasterEvent(_Detail):
    """What every event carries. `detail_type` is its EventBridge `detail-type`; `key` what a
    consumer de-duplicates on with it (a request's id, a crossing's id)."""

    detail_type: ClassVar[str]

    version: Literal[1] = 1
    if TYPE_CHECKING:
        # Each event declares it after its own id, where its sample lists it.
        time: datetime

    @property
    def key(self) -> str:
        raise NotImplementedError

    @classmethod
    def from_envelope(cls, body: str) -> Self:
        """The event in an SQS message's body, as an EventBridge rule delivers it: the envelope,
        `detail` the event. Raises ValueError for anything else (JSON's and pydantic's errors are
        ValueErrors), a paymaster event of another detail-type included."""
        envelope = json.loads(body)
        if not isinstance(envelope, dict) or (envelope.get("source"), envelope.get("detail-type")) != (
            names.EVENT_SOURCE,
            cls.detail_type,
        ):
            raise ValueError(f"not a paymaster {cls.detail_type} event")
        return cls.model_validate(envelope.get("detail"))

    def put_events_entry(self, bus_name: str) -> dict[str, Any]:
        """The PutEvents entry as AWS's JSON protocol sends it: `Time` in epoch seconds."""
        return {
            "Source": names.EVENT_SOURCE,
            "DetailType": self.detail_type,
            "Detail": self.model_dump_json(),
            "EventBusName": bus_name,
            "Time": int(self.time.timestamp()),
        }


class RequestScoped(PaymasterEvent):
    """An event named by a `request_id`: the gateway's for an event about one request, or a
    scheduled job's own for what it did once (a month close: `month-close/<team>/<month>`)."""

    request_id: str = Field(min_length=1)
    time: UtcTime

    @property
    def key(self) -> str:
        return self.request_id


class RequestEvent(RequestScoped):
    """An event about one request: who made it — the IAM principal the gateway verified and the
    team, app and env the policy maps it to; `user` is the caller's own claim — and the model."""

    team: str
    app: str
    env: str
    user: str | None
    principal_arn: str
    model: str


class TokenUsage(_Detail):
    """Tokens by kind, named as `domain.chat.Usage` names them."""

    input_tokens: Count
    output_tokens: Count
    cache_read_tokens: Count = 0
    cache_write_tokens: Count = 0

    @classmethod
    def of(cls, usage: Usage) -> "TokenUsage":
        return cls(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        )


class CostRecorded(RequestEvent):
    """A settled request: who called, what served it, the tokens charged and what they cost.

    `model` is the virtual model that served (the cheaper one after a downgrade, named in
    `downgraded_from`); `tried` every deployment tried, in order, `deployment` last (the ledger's
    `CallRecord.tried`): more than one means a fallback.
    `usage` is what was charged: the provider's count (`billed_on: provider_usage`), the input
    estimate and the delivered output (`delivered_text`), or the whole hold (`reservation`).
    """

    detail_type: ClassVar[str] = names.COST_RECORDED

    downgraded_from: str | None
    deployment: str
    tried: tuple[str, ...]
    provider_request_id: str | None
    usage: TokenUsage
    reserved_usd_micros: UsdMicros
    cost_usd_micros: UsdMicros
    billed_on: ChargedBasis
    outcome: ChargedOutcome
    flags: tuple[str, ...]
    latency_ms: Count | None
    first_token_ms: Count | None
    metadata: dict[str, str]


class RefusingRule(_Detail):
    """The rule that refused, as it stood: amounts are integers in the rule's `unit` — micro-USD
    for `cost_per_*`, tokens for `tokens_per_*`, requests for `requests_per_*`."""

    name: str
    scope: str  # the rule's bucket, e.g. "team=search/user=alice"
    unit: Unit
    limit: Amount
    used: Amount  # the counter's committed value (settled + held) when admission checked it
    remaining: Amount
    requested: Amount  # the most this request could have used: what it asked to hold
    window: str  # e.g. "2026-11", "2026-11-29T18:25Z"
    resets_at: UtcTime


class RequestDenied(RequestEvent):
    """A request a rule refused before any provider was called: it was charged nothing.

    `model` is the model the caller asked for; `code` the OpenAI error code the caller got
    (`rate_limit_exceeded` or `insufficient_quota`) with HTTP `status`.
    """

    detail_type: ClassVar[str] = names.REQUEST_DENIED

    rule: RefusingRule
    code: Literal["rate_limit_exceeded", "insufficient_quota"]
    status: Literal[429]
    metadata: dict[str, str]


class ReservationExpired(RequestScoped):
    """A hold that outlived its expiry unsettled (the gateway stopped between reserve and settle),
    charged at its reservation: the provider may have billed the call."""

    detail_type: ClassVar[str] = names.RESERVATION_EXPIRED

    team: str
    app: str
    model: str
    reserved_usd_micros: UsdMicros
    cost_usd_micros: UsdMicros
    held_until: UtcTime
    flags: tuple[str, ...]


class BudgetThresholdCrossed(PaymasterEvent):
    """A budget's spend in one window reached one of its alert thresholds: published once per
    rule, bucket, window and threshold (the ledger function's marker, docs/ALARMS.md), delivered
    at least once; consumers de-duplicate on `crossing_id`.

    Amounts are integers in the rule's `unit` (micro-USD for `cost_*`, tokens otherwise).
    `team` is who is told: the bucket's `team=` value, else the rule's one `when.team`; None for a
    budget no single team owns (no email is sent for it, docs/ALARMS.md). `time` is when the
    settlement that crossed it was written.

    Example: `search-monthly` ($2,000 a month, per team) goes from $1,590 to $1,612.40 spent: its
    80 % threshold ($1,600) is crossed, `crossing_id` `search-monthly#team=search#2026-12#80@1600000000`
    (the threshold's percentage and amount: a cap changed mid-window makes thresholds of its own).
    """

    detail_type: ClassVar[str] = names.BUDGET_THRESHOLD_CROSSED

    crossing_id: str = Field(min_length=1)
    time: UtcTime
    team: str | None
    rule: str
    scope: str  # the rule's bucket, e.g. "team=search"
    window: str  # the window's id, e.g. "2026-12"
    resets_at: UtcTime  # the window's end
    time_zone: str  # the rule's, in which its day/week/month windows run
    threshold_pct: Annotated[int, Field(strict=True, ge=1, le=100)]
    unit: Unit
    limit: Amount  # the rule's limit (100 %), in its unit
    cap: Amount  # where admission stops: the limit, or an earlier `block` action's share of it
    threshold: Amount  # limit × threshold_pct / 100, what the spend reached
    spent: Amount  # the window's settled spend right after the crossing

    @property
    def key(self) -> str:
        return self.crossing_id


def request_denied(
    error: LimitRefusedError,
    caller: Caller,
    *,
    request_id: str,
    model: str,
    user: str | None,
    metadata: Mapping[str, str],
) -> RequestDenied:
    """The event for a refusal the caller is answered with. Every rule refusal is a 429
    (`api.errors`; a test holds the two together)."""
    refusal = error.refusal
    rule = refusal.rule
    return RequestDenied(
        request_id=request_id,
        time=error.now,
        team=caller.team,
        app=caller.app,
        env=caller.env,
        user=user,
        principal_arn=caller.arn,
        model=model,
        rule=RefusingRule(
            name=rule.name,
            scope=refusal.hold.bucket,
            unit=rule.unit,
            limit=rule.cap,
            used=refusal.used,
            remaining=refusal.remaining,
            requested=refusal.hold.amount,
            window=refusal.hold.window.id,
            resets_at=refusal.hold.window.end,
        ),
        code="insufficient_quota" if isinstance(error, BudgetExhaustedError) else "rate_limit_exceeded",
        status=429,
        metadata=dict(metadata),
    )


# Outcomes whose entry is the call's charge. A fallback's released hop, or a request the provider
# refused, was charged nothing: its entry is in the ledger, and the request's charge (if any) is
# the CostRecorded of the hop that settled — one per request id, the key consumers de-duplicate on.
CHARGED_OUTCOMES = frozenset(get_args(ChargedOutcome))
# The flag of a charge whose tokens were not recorded: settled by a gateway from before the charged
# tokens were kept (docs/LEDGER.md, "Deploying it"). The cost is exact; the tokens read as zeros.
TOKENS_NOT_RECORDED = "tokens_not_recorded"


def ledger_event(entry: LedgerEntry, written_at: datetime | None) -> CostRecorded | ReservationExpired | None:
    """The event a ledger entry publishes: CostRecorded for a charged call, ReservationExpired for
    a hold the sweeper charged, nothing for a release. `written_at`: when its settlement was
    written (the stream record's creation time); None for a record without one (built by hand from
    the item, to replay it), and an expired hold then says its expiry, the earliest it can have
    been charged.

    Example: a fallback — hop 0 `released` (nothing), hop 1 `settled` (CostRecorded, `tried`
    naming both deployments); a crash after admission — `expired` (ReservationExpired)."""
    if entry.outcome in CHARGED_OUTCOMES:
        return cost_recorded(entry)
    if entry.outcome == "expired":
        return reservation_expired(entry, written_at or entry.held_until)
    return None


def cost_recorded(entry: LedgerEntry) -> CostRecorded:
    """The CostRecorded of a charged entry. Its `time` is the settlement as the gateway measured
    it: admission + latency (2026-11-29T14:03:07.412Z + 1,840 ms → 14:03:09.252Z); `usage` the
    provider's count, or else the tokens the gateway charged. ValueError (pydantic's) for an entry
    that is not a charged call (no deployment, no basis).
    """
    if entry.outcome not in CHARGED_OUTCOMES:
        raise ValueError(f"a {entry.outcome} entry is not a charged call")
    tokens, flags = entry.usage or entry.charged_usage, entry.flags
    if tokens is None:
        tokens, flags = Usage(0, 0), (*flags, TOKENS_NOT_RECORDED)
    # Validated from a mapping: an entry's deployment and basis may be None, which the model refuses.
    return CostRecorded.model_validate(
        {
            "request_id": entry.request_id,
            "time": entry.admitted_at + timedelta(milliseconds=entry.latency_ms or 0),
            "team": entry.team,
            "app": entry.app,
            "env": entry.env,
            "user": entry.user,
            "principal_arn": entry.principal,
            "model": entry.model,
            "downgraded_from": entry.downgraded_from,
            "deployment": entry.deployment,
            "tried": entry.tried,
            "provider_request_id": entry.provider_request_id,
            "usage": TokenUsage.of(tokens),
            "reserved_usd_micros": entry.reserved,
            "cost_usd_micros": entry.cost,
            "billed_on": entry.billed_on,
            "outcome": entry.outcome,
            "flags": flags,
            "latency_ms": entry.latency_ms,
            "first_token_ms": entry.first_token_ms,
            "metadata": dict(entry.metadata),
        }
    )


def reservation_expired(entry: LedgerEntry, charged_at: datetime | None) -> ReservationExpired:
    """The ReservationExpired of an `expired` entry (the sweeper charged the hold at its
    reservation, flagged `expired_unsettled`), at `charged_at`. ValueError for any other entry,
    or one that does not say when its hold expired."""
    if entry.outcome != "expired" or entry.held_until is None or charged_at is None:
        raise ValueError(f"a {entry.outcome} entry held until {entry.held_until} is not an expired hold")
    return ReservationExpired(
        request_id=entry.request_id,
        time=charged_at,
        team=entry.team,
        app=entry.app,
        model=entry.model,
        reserved_usd_micros=entry.reserved,
        cost_usd_micros=entry.cost,
        held_until=entry.held_until,
        flags=entry.flags,
    )


def denied_entry(event: RequestDenied) -> LedgerEntry:
    """The entry of a request a rule refused: cost 0, reserved 0 (nothing was held), admitted at
    the refusal's time, keyed by its request id like any entry (hop 0: only a request's first
    admission is answered with a 429)."""
    rule = event.rule
    return LedgerEntry(
        request_id=event.request_id,
        hop=0,
        admitted_at=event.time,
        team=event.team,
        app=event.app,
        env=event.env,
        principal=event.principal_arn,
        model=event.model,
        outcome=DENIED,
        reserved=0,
        cost=0,
        user=event.user,
        metadata=tuple(sorted(event.metadata.items())),
        denial=Denial(
            rule=rule.name,
            code=event.code,
            scope=rule.scope,
            unit=rule.unit,
            limit=rule.limit,
            used=rule.used,
            remaining=rule.remaining,
            requested=rule.requested,
            window=rule.window,
            resets_at=rule.resets_at,
        ),
    )


class MonthTotals(_Detail):
    """What calls add up to (`domain.ledger.Totals`): calls admitted (released ones included, at
    $0), micro-USD charged, the tokens providers reported, and requests a rule refused."""

    calls: Count
    cost_usd_micros: UsdMicros
    input_tokens: Count
    output_tokens: Count
    cache_read_tokens: Count
    cache_write_tokens: Count
    denials: Count

    @classmethod
    def of(cls, totals: Totals) -> "MonthTotals":
        return cls(
            calls=totals.calls,
            cost_usd_micros=totals.cost,
            input_tokens=totals.input_tokens,
            output_tokens=totals.output_tokens,
            cache_read_tokens=totals.cache_read_tokens,
            cache_write_tokens=totals.cache_write_tokens,
            denials=totals.denials,
        )


class MonthRow(_Detail):
    """One app, model or user of the month; `name` None for the calls that named no user."""

    name: str | None
    totals: MonthTotals


class RuleDenials(_Detail):
    rule: str
    denials: Count


class BudgetFinal(_Detail):
    """A monthly budget's bucket as its counter ended the month: `spent` and `cap` in the rule's
    unit (micro-USD for cost_per_month, tokens for tokens_per_month), in its own window — the
    month of the rule's time zone, which may differ from the team's."""

    rule: str
    scope: str
    unit: Unit
    window: str
    spent: Amount
    cap: Amount


class MonthClosed(RequestScoped):
    """A team's month, closed: its calls' totals from the ledger's entries in the team's time zone
    (`alerts.time_zone`), `starts_at` ≤ admission < `ends_at`, by app, model and user (costliest
    first), denials by rule, and each monthly budget's final spend against its cap.

    `request_id` is `month-close/<team>/<month>`: one per team and month, the key to de-duplicate
    on. The event lists at most `MONTH_CLOSED_ROWS` rows per breakdown (EventBridge takes 256 KB);
    `rows_left_out` says how many it left out, and the report item (`paymaster report`) has them all.
    """

    detail_type: ClassVar[str] = names.MONTH_CLOSED

    team: str
    month: str  # YYYY-MM in `time_zone`
    time_zone: str
    starts_at: UtcTime
    ends_at: UtcTime
    totals: MonthTotals
    by_app: tuple[MonthRow, ...]
    by_model: tuple[MonthRow, ...]
    by_user: tuple[MonthRow, ...]
    denials_by_rule: tuple[RuleDenials, ...]
    budgets: tuple[BudgetFinal, ...]
    rows_left_out: Count = 0

    def listing_at_most(self, rows: int) -> "MonthClosed":
        """The same report with each breakdown cut to its first `rows`, counting what was left out."""
        cut = {name: getattr(self, name)[:rows] for name in ("by_app", "by_model", "by_user")}
        left_out = sum(len(getattr(self, name)) - len(kept) for name, kept in cut.items())
        return self.model_copy(update=cut | {"rows_left_out": self.rows_left_out + left_out})


MONTH_CLOSED_ROWS = 50


def month_close_id(team: str, month: str) -> str:
    """`month-close/search/2026-11`: a MonthClosed's request_id."""
    return f"month-close/{team}/{month}"
