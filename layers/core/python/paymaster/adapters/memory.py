"""In-memory adapters with the real ones' semantics, for tests, benchmarks and local tools."""

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar

from paymaster import schema
from paymaster.domain.audit import PromptRecord
from paymaster.domain.errors import StoreUnavailableError
from paymaster.domain.events import BudgetThresholdCrossed, MonthClosed
from paymaster.domain.ledger import Dimension, LedgerEntry, Rollup, Totals, rollups, totals
from paymaster.domain.limits import Hold, Refusal
from paymaster.ports import CounterState, HeldReservation, Reservation, Settlement, StoredReport

# DynamoDB answers a repeat of a transaction that committed under the same ClientRequestToken
# with success, without applying it again, for this long after the first one completed.
CLIENT_TOKEN_WINDOW = timedelta(minutes=10)
# DynamoDB refuses a transaction with more items than this, or one naming an item twice.
MAX_TRANSACTION_ITEMS = 100

StoreOperation = Literal["reserve", "settle", "counters", "expired"]
_Key = tuple[str, str]
_Result = TypeVar("_Result")


@dataclass(frozen=True, slots=True)
class _StoredHold:
    """A hold as the reservation item keeps it: what a repeat is compared with, and the sweep releases."""

    pk: str
    sk: str
    amount: int
    rule: str


@dataclass(frozen=True, slots=True)
class _StoredReservation:
    holds: tuple[_StoredHold, ...]
    held_until: int | None  # epoch seconds, as the held-by-expiry index sorts; None for a fence
    outcome: str | None = None  # None while held; then the settlement's outcome
    reserved: int = 0  # micro-USD, as the reservation item keeps it


@dataclass(frozen=True, slots=True)
class _Fault:
    error: StoreUnavailableError
    applied: bool


class MemoryCounterStore:
    """A CounterStore in memory that answers every call as DynamoDBCounterStore does.

    DynamoDB applies each transaction to its items at once, and concurrent writes to an item one
    after another; here a lock around each call is that transaction, so any number of threads see
    what they would see against DynamoDB. The same rules decide:

    - `reserve`: all or nothing. A hold fits if its counter's first use of the window fits the
      amount alone, else if `committed <= cap - amount`; a negative room never fits; `cap` None
      is counted unchecked. Refusals carry each refusing counter's committed value. A repeat
      within CLIENT_TOKEN_WINDOW of one that committed (the same request id, holds and expiry:
      DynamoDB's ClientRequestToken) is admitted without holding again, whatever has happened
      since; otherwise a repeat that finds its own reservation still held (same holds) is
      admitted, and anything else under a request id already used is StoreUnavailableError.
    - `settle`: once per request id, while the reservation is held; with `fence`, a request id
      that has no reservation at all gets a released one, so a late copy of its admission fails.
      A settlement's prompt audit record is kept when it applies (`prompts`), in its place if
      one was there, and not when it does not.
    - `expired`: held reservations whose expiry, in whole epoch seconds, is before `now`, oldest
      first, at most `limit`.

    Not modelled: conflicts and throttling (DynamoDBCounterStore retries them, then raises
    StoreUnavailableError, which `fail_next` stands for), TTL deletion (which nothing relies
    on), the index's eventual consistency, and IdempotentParameterMismatchException — a token
    reused by another request, which DynamoDB answers with a ClientError and no admission can
    send (the token covers what changes between attempts); here it is StoreUnavailableError, as
    any other reservation under a used id.

    `clock` dates client tokens. `fail_next` makes the next call of an operation fail, for
    tests of what the use cases do when the store does not answer.
    """

    def __init__(self, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._counters: dict[_Key, CounterState] = {}
        self._reservations: dict[str, _StoredReservation] = {}
        self._prompts: dict[tuple[str, int], PromptRecord] = {}
        self._tokens: dict[tuple[object, ...], tuple[datetime, tuple[object, ...]]] = {}
        self._token_order: deque[tuple[datetime, tuple[object, ...]]] = deque()
        self._faults: dict[StoreOperation, deque[_Fault]] = {
            "reserve": deque(),
            "settle": deque(),
            "counters": deque(),
            "expired": deque(),
        }
        self._lock = threading.Lock()

    def fail_next(self, operation: StoreOperation, error: StoreUnavailableError, *, applied: bool = False) -> None:
        """The next call of `operation` raises `error`: before changing anything, or — `applied` —
        after the call took effect, as a store that committed and then never answered
        (StoreOutcomeUnknownError). Called again, the failures queue up, one call each."""
        with self._lock:
            self._faults[operation].append(_Fault(error, applied))

    @property
    def prompts(self) -> dict[tuple[str, int], PromptRecord]:
        """The prompt audit records settlements wrote, by request id and hop."""
        with self._lock:
            return dict(self._prompts)

    def reserve(self, reservation: Reservation) -> list[Refusal]:
        return self._call("reserve", lambda: self._reserve(reservation))

    def settle(self, settlement: Settlement) -> bool:
        return self._call("settle", lambda: self._settle(settlement))

    def counters(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CounterState]:
        return self._call("counters", lambda: {key: self._counters.get(key, CounterState(0, 0)) for key in keys})

    def expired(self, now: datetime, limit: int) -> list[HeldReservation]:
        return self._call("expired", lambda: self._expired(now, limit))

    def _call(self, operation: StoreOperation, apply: Callable[[], _Result]) -> _Result:
        """One call, as one transaction: under the lock, with the failure queued for it if any."""
        with self._lock:
            fault = self._faults[operation].popleft() if self._faults[operation] else None
            if fault is not None and not fault.applied:
                raise fault.error
            result = apply()
        if fault is not None:
            raise fault.error
        return result

    def _reserve(self, reservation: Reservation) -> list[Refusal]:
        request_id = reservation.request_id
        _one_transaction(request_id, [(hold.pk, hold.sk) for hold in reservation.holds])
        now = self._clock()
        token, body = _client_token(reservation), _request_body(reservation)
        while self._token_order and now - self._token_order[0][0] >= CLIENT_TOKEN_WINDOW:
            self._tokens.pop(self._token_order.popleft()[1], None)
        if token in self._tokens:
            if self._tokens[token][1] == body:
                return []  # answered as the first time: committed, nothing applied again
            raise StoreUnavailableError(f"request id {request_id} was already reserved")
        stored_holds = tuple(_StoredHold(hold.pk, hold.sk, hold.amount, hold.rule.name) for hold in reservation.holds)
        stored = self._reservations.get(request_id)
        if stored is not None:
            if stored.outcome is None and stored.holds == stored_holds:
                return []  # a repeat that found its own reservation, committed the first time
            raise StoreUnavailableError(f"request id {request_id} was already reserved")
        refusals = [
            Refusal(hold=hold, used=counter.committed if counter else 0)
            for hold, counter in ((hold, self._counters.get((hold.pk, hold.sk))) for hold in reservation.holds)
            if not _fits(hold, counter)
        ]
        if refusals:
            return refusals
        for hold in reservation.holds:
            counter = self._counters.get((hold.pk, hold.sk), CounterState(0, 0))
            self._counters[(hold.pk, hold.sk)] = CounterState(counter.committed + hold.amount, counter.spent)
        reserved = reservation.asked.reserved if reservation.asked is not None else 0
        self._reservations[request_id] = _StoredReservation(
            stored_holds, _epoch(reservation.held_until), reserved=reserved
        )
        self._tokens[token] = (now, body)
        self._token_order.append((now, token))
        return []

    def _settle(self, settlement: Settlement) -> bool:
        request_id = settlement.request_id
        _one_transaction(
            request_id,
            [(change.pk, change.sk) for change in settlement.changes],
            others=int(settlement.audit is not None),
        )
        stored = self._reservations.get(request_id)
        if stored is None:
            if settlement.fence:  # a released reservation that holds nothing, where none exists
                self._reservations[request_id] = _StoredReservation((), None, settlement.outcome)
            return False
        if stored.outcome is not None:
            return False  # settled, released or swept before: nothing to do
        for change in settlement.changes:
            counter = self._counters.get((change.pk, change.sk), CounterState(0, 0))
            self._counters[(change.pk, change.sk)] = CounterState(
                counter.committed + change.delta, counter.spent + change.spent
            )
        self._reservations[request_id] = replace(stored, outcome=settlement.outcome)
        if settlement.audit is not None:
            self._prompts[(settlement.audit.request_id, settlement.audit.hop)] = settlement.audit
        return True

    def _expired(self, now: datetime, limit: int) -> list[HeldReservation]:
        before = _epoch(now)
        due = sorted(
            (
                (stored.held_until, request_id, stored)
                for request_id, stored in self._reservations.items()
                if stored.outcome is None and stored.held_until is not None and stored.held_until < before
            ),
            key=lambda entry: entry[0],
        )
        return [
            HeldReservation(
                request_id, tuple((hold.pk, hold.sk, hold.amount) for hold in stored.holds), stored.reserved
            )
            for _, request_id, stored in due[:limit]
        ]


def _fits(hold: Hold, counter: CounterState | None) -> bool:
    """`committed <= cap - amount`; a counter not used yet this window, if the amount alone fits."""
    if hold.cap is None:
        return True
    room = hold.cap - hold.amount
    if counter is None:
        return room >= 0
    return counter.committed <= room


def _one_transaction(request_id: str, counters: list[_Key], *, others: int = 0) -> None:
    """What DynamoDB refuses in a transaction on a reservation and its counters (and `others`
    items in other tables) before looking at any condition (a ValidationException there)."""
    keys = [(schema.reservation_pk(request_id), schema.RESERVATION_SORT_KEY), *counters]
    if len(keys) + others > MAX_TRANSACTION_ITEMS:
        raise ValueError(f"a transaction holds at most {MAX_TRANSACTION_ITEMS} items, not {len(keys) + others}")
    if len(set(keys)) != len(keys):
        raise ValueError("a transaction cannot name one item twice")


def _client_token(reservation: Reservation) -> tuple[object, ...]:
    """What DynamoDBCounterStore derives its ClientRequestToken from: request id, holds, expiry."""
    holds = tuple((hold.pk, hold.sk, hold.amount, hold.cap) for hold in reservation.holds)
    return reservation.request_id, holds, _epoch(reservation.held_until)


def _request_body(reservation: Reservation) -> tuple[object, ...]:
    """Everything of a reservation that its TransactWriteItems request carries."""
    holds = tuple(
        (hold.pk, hold.sk, hold.amount, hold.cap, hold.rule.name, hold.window.end) for hold in reservation.holds
    )
    return (
        reservation.request_id,
        holds,
        _epoch(reservation.held_until),
        reservation.team,
        reservation.app,
        reservation.model,
    )


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class MemorySettlementQueue:
    """A settlement queue that keeps what it is given until `take` hands it over."""

    def __init__(self) -> None:
        self._waiting: list[Settlement] = []
        self._lock = threading.Lock()

    def put(self, settlement: Settlement) -> None:
        with self._lock:
            self._waiting.append(settlement)

    def take(self) -> list[Settlement]:
        """Everything queued so far, oldest first; the queue is empty afterwards."""
        with self._lock:
            taken, self._waiting = self._waiting, []
        return taken


class MemoryLedger:
    """The ledger as the DynamoDB one keeps it: an entry once, added to its rollups with it.
    `unavailable` makes every read and write raise StoreUnavailableError, as a ledger table
    nobody can reach does."""

    def __init__(self) -> None:
        self._recorded: dict[tuple[str, str, str, int], LedgerEntry] = {}
        self._rollups: dict[Rollup, Totals] = {}
        self._lock = threading.Lock()
        self.unavailable = False

    def record(self, entry: LedgerEntry) -> bool:
        self._check()
        key = (schema.calls_pk(entry.team, entry.month), entry.admitted, entry.request_id, entry.hop)
        with self._lock:
            if key in self._recorded:
                return False
            self._recorded[key] = entry
            for rollup in rollups(entry):
                self._rollups[rollup] = self._rollups.get(rollup, Totals()) + totals(entry)
        return True

    def rollup(self, rollup: Rollup) -> Totals:
        self._check()
        with self._lock:
            return self._rollups.get(rollup, Totals())

    def breakdown(self, team: str, month: str, dimension: Dimension) -> dict[str, Totals]:
        self._check()
        with self._lock:
            return {
                rollup.value: added
                for rollup, added in self._rollups.items()
                if (rollup.team, rollup.period, rollup.dimension) == (team, month, dimension) and rollup.value
            }

    def between(self, team: str, start: datetime, end: datetime) -> Iterator[LedgerEntry]:
        self._check()
        with self._lock:
            found = [entry for entry in self._recorded.values() if entry.team == team]
        yield from sorted(
            (entry for entry in found if start <= entry.admitted_at < end), key=lambda entry: entry.admitted
        )

    def _check(self) -> None:
        if self.unavailable:
            raise StoreUnavailableError("the ledger is unreachable")


class MemoryReports:
    """Month closes and notice markers as DynamoDBReports keeps them: each put once. `unavailable`
    makes every call raise StoreUnavailableError."""

    def __init__(self) -> None:
        self.reports: dict[tuple[str, str], StoredReport] = {}
        self.notices: dict[tuple[str, str], datetime] = {}
        self._lock = threading.Lock()
        self.unavailable = False

    def put_report(self, report: MonthClosed) -> bool:
        self._check()
        with self._lock:
            if (report.team, report.month) in self.reports:
                return False
            self.reports[report.team, report.month] = StoredReport(report, published=False)
        return True

    def report(self, team: str, month: str) -> StoredReport | None:
        self._check()
        return self.reports.get((team, month))

    def mark_published(self, team: str, month: str) -> None:
        self._check()
        with self._lock:
            self.reports[team, month] = StoredReport(self.reports[team, month].report, published=True)

    def unpublished(self, team: str) -> list[StoredReport]:
        self._check()
        with self._lock:
            return [
                stored for (owner, _), stored in sorted(self.reports.items()) if owner == team and not stored.published
            ]

    def claim_notice(self, key: str, day: str, expires_at: datetime) -> bool:
        self._check()
        with self._lock:
            if (key, day) in self.notices:
                return False
            self.notices[key, day] = expires_at
        return True

    def release_notice(self, key: str, day: str) -> None:
        self._check()
        with self._lock:
            self.notices.pop((key, day), None)

    def _check(self) -> None:
        if self.unavailable:
            raise StoreUnavailableError("the ledger is unreachable")


class MemoryAlarmMarks:
    """The alarm markers as the DynamoDB ones behave (`adapters.dynamodb_alarms`): each call one
    atomic conditional write. `unavailable` makes every call raise StoreUnavailableError."""

    def __init__(self) -> None:
        self.crossed: dict[str, str] = {}  # crossing id → the record that crossed it
        self.notices: dict[str, tuple[str, int]] = {}  # crossing id → (state, lease until)
        self._lock = threading.Lock()
        self.unavailable = False
        self.reads = 0  # how many times `crossed_by` was asked

    def crossed_by(self, crossing: BudgetThresholdCrossed) -> str | None:
        self._check()
        with self._lock:
            self.reads += 1
            return self.crossed.get(crossing.crossing_id)

    def cross(self, crossing: BudgetThresholdCrossed, record_id: str) -> bool:
        self._check()
        with self._lock:
            return self.crossed.setdefault(crossing.crossing_id, record_id) == record_id

    def claim(self, crossing: BudgetThresholdCrossed, now: datetime, lease_s: int) -> bool:
        self._check()
        with self._lock:
            state, lease = self.notices.get(crossing.crossing_id, (None, 0))
            if state == schema.SENT or (state == schema.SENDING and lease >= int(now.timestamp())):
                return False
            self.notices[crossing.crossing_id] = (schema.SENDING, int(now.timestamp()) + lease_s)
            return True

    def sent(self, crossing: BudgetThresholdCrossed) -> None:
        self._check()
        with self._lock:
            self.notices[crossing.crossing_id] = (schema.SENT, 0)

    def release(self, crossing: BudgetThresholdCrossed) -> None:
        self._check()
        with self._lock:
            if self.notices.get(crossing.crossing_id, (None, 0))[0] == schema.SENDING:
                del self.notices[crossing.crossing_id]

    def _check(self) -> None:
        if self.unavailable:
            raise StoreUnavailableError("the ledger is unreachable")
