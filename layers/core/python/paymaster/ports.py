"""The interfaces the use cases need. Adapters implement them; only the composition root
(`paymaster.composition`) chooses which."""

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from paymaster.domain.audit import PromptRecord
from paymaster.domain.chat import ChatRequest, Completion, StreamEvent, Usage
from paymaster.domain.events import PaymasterEvent
from paymaster.domain.limits import Hold, Refusal
from paymaster.domain.metering import Basis, SettlementOutcome
from paymaster.domain.policy import Deployment


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """One call to one deployment: the caller's request with the output limit the gateway set."""

    request: ChatRequest
    deployment: Deployment
    max_output_tokens: int


class ChatProvider(Protocol):
    """One provider kind (OpenAI-compatible, Bedrock, ...), translating to and from its wire."""

    def complete(self, call: ProviderCall) -> Completion: ...

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        """Yields deltas, then Finished, then UsageReported when the provider reports usage.

        Closing the iterator early (client gone) must close the provider connection.
        """
        ...


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What an authenticator may look at: the request exactly as it arrived."""

    method: str
    url: str  # scheme://host/path?query, as sent (percent-encoding untouched)
    headers: dict[str, str]  # lower-cased names
    body: bytes


class Authenticator(Protocol):
    """Finds the IAM principal behind a request; raises AuthenticationError if it cannot."""

    def principal_arn(self, request: HttpRequest) -> str: ...


@dataclass(frozen=True, slots=True)
class Asked:
    """Who asked for what, as the ledger records an admitted request (the counters need none of it)."""

    admitted_at: datetime
    principal_arn: str
    env: str
    user: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    reserved: int = 0  # micro-USD: the most the request can cost, as held
    downgraded_from: str | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """What admission holds for one request until it is settled or expires."""

    request_id: str
    holds: tuple[Hold, ...]
    held_until: datetime
    team: str
    app: str
    model: str
    asked: Asked | None = None


@dataclass(frozen=True, slots=True)
class CallRecord:
    """How a request was served, as the ledger records it with its settlement."""

    deployment: str | None  # the deployment that served (or failed last)
    tried: tuple[str, ...]  # every deployment tried under this hold, in order
    provider_request_id: str | None
    latency_ms: int  # admission to settlement
    first_token_ms: int | None  # admission to the first streamed token


@dataclass(frozen=True, slots=True)
class CounterChange:
    """Settling one counter: `committed` moves by `delta` (actual − reserved); `spent` by `spent`."""

    pk: str
    sk: str
    delta: int
    spent: int


@dataclass(frozen=True, slots=True)
class Settlement:
    """Replacing a reservation's hold by what the request used, once per request id.

    `audit`: the prompt audit record, put with the settlement or not at all — the settlement's
    `state = held` condition makes it one record per reservation, however often it is sent.

    `fence`: the reservation may not exist — an admission whose outcome the gateway did not learn
    (the store timed out after the write may have applied). If it does not, a released one is left
    in its place, so that a write still in flight cannot commit the hold afterwards.
    """

    request_id: str
    changes: tuple[CounterChange, ...]
    outcome: SettlementOutcome
    cost: int  # micro-USD, for the ledger
    usage: Usage | None
    flags: tuple[str, ...] = ()
    fence: bool = False
    billed_on: Basis | None = None
    call: CallRecord | None = None
    # An opted-in team's prompt and completion, written in the settlement's own transaction.
    audit: PromptRecord | None = None
    # The tokens charged when they are not the provider's count (`usage` None): the input
    # estimate and the delivered output (delivered_text), or the whole hold (reservation).
    charged: Usage | None = None


@dataclass(frozen=True, slots=True)
class HeldReservation:
    """A reservation as the store keeps it: enough to settle it without the gateway's memory."""

    request_id: str
    held: tuple[tuple[str, str, int], ...]  # (pk, sk, amount) on each counter
    reserved: int  # micro-USD: the most the request could cost (0 if written before it was kept)

    def charged_in_full(self) -> tuple[CounterChange, ...]:
        """Every hold becomes spend: committed stays, spent grows by the amount held."""
        return tuple(CounterChange(pk, sk, delta=0, spent=amount) for pk, sk, amount in self.held)


@dataclass(frozen=True, slots=True)
class CounterState:
    committed: int
    spent: int


class CounterStore(Protocol):
    """Counters and reservations. Each call is one request to the store, all or nothing, and may
    be repeated: a repeated reservation finds its own and is admitted, a repeated settlement
    counts nothing twice.

    Raises StoreUnavailableError when the store cannot answer, and its StoreOutcomeUnknownError
    when the store may have applied the request without saying so (a timeout, a broken
    connection, a 5xx), after retrying it.
    """

    def reserve(self, reservation: Reservation) -> list[Refusal]:
        """Holds every amount, or nothing: the refusals (with each counter's value) if any cap
        would be passed; an empty list when admitted (also when this reservation was already
        held: a retry that finds its own)."""
        ...

    def settle(self, settlement: Settlement) -> bool:
        """Applies the changes once per request id; False if it was already settled (or, with
        `fence`, if nothing was held: the fence is then in place)."""
        ...

    def counters(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CounterState]: ...

    def expired(self, now: datetime, limit: int) -> list[HeldReservation]:
        """Reservations still held whose expiry is before `now`, oldest first."""
        ...


class SettlementQueue(Protocol):
    """Settlements (releases included) the store could not take now, kept to be applied later by
    the settlement-retry function, until they land. Never raises: a settlement is never dropped."""

    def put(self, settlement: Settlement) -> None: ...


@dataclass(frozen=True, slots=True)
class Unpublished:
    """An event the bus did not take, and why: the bus's error code (`ThrottlingException`,
    `MalformedDetail`, …) or the transport's (`ReadTimeoutError`) and its message."""

    event: PaymasterEvent
    code: str
    message: str
    # True when the bus refused the event for what it is (too large, malformed): sending it again
    # cannot succeed, so a stream consumer logs it rather than holding its shard back for it.
    final: bool = False


class EventPublisher(Protocol):
    """Puts events on paymaster's bus, at least once: a consumer de-duplicates on request id.

    Never raises for the bus: returns the events it could not publish after its own retries
    (empty when the bus took every one), so that a stream consumer can report those records as
    failed and have them delivered again.
    """

    def publish(self, events: Sequence[PaymasterEvent]) -> list[Unpublished]: ...


class TokenCounter(Protocol):
    """Tokens in `text` under `encoding` — or, while the encoding loads, an upper bound of them."""

    def __call__(self, text: str, encoding: str, /) -> int: ...


@dataclass(frozen=True, slots=True)
class Notice:
    """An email as a team lead reads it: a subject line and plain text."""

    subject: str
    text: str


class Notifier(Protocol):
    """Sends a notice to the subscribers of a team's topic (SNS in AWS); raises
    `NoticeNotSentError` when the topic did not take it."""

    def notify(self, team: str, notice: Notice) -> None: ...


class Clock(Protocol):
    def __call__(self) -> datetime: ...


# Appended apart from the imports above so that concurrent edits of this file do not collide;
# move this import up to the others when convenient.
from paymaster.domain.embeddings import EmbeddingRequest, Embeddings  # noqa: E402


@dataclass(frozen=True, slots=True)
class EmbeddingCall:
    """One embeddings call to one deployment: the caller's request as validated."""

    request: EmbeddingRequest
    deployment: Deployment


class EmbeddingProvider(Protocol):
    """One provider kind's embeddings API (OpenAI-compatible, Bedrock), translating to and from its wire.

    InvalidRequestError means nothing was sent (token ids for another tokenizer, `dimensions` the
    model does not offer): release the reservation. ProviderError otherwise; its `accepted` says
    whether the provider may bill (a broken answer, or a multi-call request that failed part-way).
    `Embeddings.input_tokens` None means no usable count: charge the reservation, never zero.
    """

    def embed(self, call: EmbeddingCall) -> Embeddings: ...


from paymaster.domain.ledger import Dimension, LedgerEntry, Rollup, Totals  # noqa: E402


class Ledger(Protocol):
    """The audit ledger: an entry per reservation that reached its outcome, and the rollups."""

    def record(self, entry: LedgerEntry) -> bool:
        """Writes the entry and adds it to its rollups, all or nothing, once: False when it was
        already recorded (a stream record delivered again), and then nothing is added. Raises
        StoreUnavailableError when the ledger cannot take it now."""
        ...


class SpendLedger(Protocol):
    """The ledger's rollups, read: what `GET /v1/usage` reports. Both raise StoreUnavailableError
    when the ledger cannot be read."""

    def rollup(self, rollup: Rollup) -> Totals:
        """What the rollup adds up to so far; zeros when nothing was added to it."""
        ...

    def breakdown(self, team: str, month: str, dimension: Dimension) -> dict[str, Totals]:
        """Every app, model or user of `team`'s UTC `month` with what its calls add up to; {} for none."""
        ...


from paymaster.domain.metering import Bill  # noqa: E402


@dataclass(frozen=True, slots=True)
class RequestMetrics:
    """What one chat or embeddings request adds to the gateway's metrics, once its outcome is
    known (docs/METRICS.md): served, failed or refused by a rule.

    `model` is the virtual model it ended on (after a downgrade or a fallback; the one it named
    when refused). `bill` is None when refused. `provider_errors` names the provider of each
    call that failed, in order; `latency_ms` is admission to settlement.
    """

    team: str
    app: str
    env: str
    model: str
    bill: Bill | None = None
    denied_by: str | None = None  # the refusing rule's name, or the error code
    downgraded: bool = False
    fell_back: bool = False
    provider_errors: tuple[str, ...] = ()
    latency_ms: int | None = None
    first_token_ms: int | None = None
    request_id: str | None = None  # not a dimension: a property of the line, to find it by


class ProjectionMetrics(Protocol):
    """The forecast's projection of a team's budget to its window's end, as a metric the team's
    dashboard draws beside its spend (`names.METRIC_PROJECTED_SPEND` by team and rule). Never
    raises: a projection not drawn is no reason to fail the forecast."""

    def emit(self, team: str, rule: str, projected: int, at: datetime) -> None: ...


class MetricsSink(Protocol):
    """Publishes each request's metrics as it ends. Never raises, and never waits on the network."""

    def emit(self, request: RequestMetrics) -> None: ...


from paymaster.domain.events import BudgetThresholdCrossed, MonthClosed  # noqa: E402


@dataclass(frozen=True, slots=True)
class StoredReport:
    """A month close as the ledger keeps it, and whether its MonthClosed is known to be on the bus."""

    report: MonthClosed
    published: bool


class Entries(Protocol):
    """The ledger's entries, read by admission time. Raises StoreUnavailableError."""

    def between(self, team: str, start: datetime, end: datetime) -> Iterator[LedgerEntry]:
        """Every entry of `team` admitted at or after `start` and before `end`, in order of admission:
        a Query with a sort-key range of each UTC month's partition the span overlaps."""
        ...


class Reports(Protocol):
    """Month closes and once-a-day notice markers, in the ledger table. Raises StoreUnavailableError."""

    def put_report(self, report: MonthClosed) -> bool:
        """Puts the report unless the team's month has one: False (and nothing written) if it has."""
        ...

    def report(self, team: str, month: str) -> StoredReport | None: ...

    def mark_published(self, team: str, month: str) -> None: ...

    def unpublished(self, team: str) -> list[StoredReport]:
        """The team's reports not yet marked published, oldest month first."""
        ...

    def claim_notice(self, key: str, day: str, expires_at: datetime) -> bool:
        """Puts the marker `key`/`day` unless it is there: False when this day's notice was claimed
        by another run. A repeat of this very claim (its first answer lost) is still this claim's."""
        ...

    def release_notice(self, key: str, day: str) -> None:
        """Deletes a marker whose notice could not be sent, so that the next run may send it."""
        ...


class AlarmMarks(Protocol):
    """The markers that make each threshold fire once per window and email once (docs/ALARMS.md).
    Each call is one read (`crossed_by`) or one conditional write; each raises
    StoreUnavailableError when the store cannot answer."""

    def crossed_by(self, crossing: BudgetThresholdCrossed) -> str | None:
        """The stream record the crossing's marker names, or None when there is none yet: one
        read, which may be stale (only `cross` decides)."""
        ...

    def cross(self, crossing: BudgetThresholdCrossed, record_id: str) -> bool:
        """Records that stream record `record_id` crossed the threshold: True when it is the one
        that did (now, or on an earlier delivery of it), False when another record had."""
        ...

    def claim(self, crossing: BudgetThresholdCrossed, now: datetime, lease_s: int) -> bool:
        """Takes the crossing's email to send it, for `lease_s` seconds: False when it was sent,
        or another delivery is sending it (its lease not yet over)."""
        ...

    def sent(self, crossing: BudgetThresholdCrossed) -> None:
        """The email went out: no later delivery sends it."""
        ...

    def release(self, crossing: BudgetThresholdCrossed) -> None:
        """The email did not go out: the next delivery may send it at once."""
        ...
