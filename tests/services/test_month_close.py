"""Month close on a controlled clock, in the in-memory ledger: a team's month is its own time
zone's (search: America/Los_Angeles), counted once, published once."""

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from paymaster import schema
from paymaster.adapters.memory import MemoryLedger, MemoryReports
from paymaster.domain.errors import EventNotPublishedError, MonthNotOverError, StoreUnavailableError
from paymaster.domain.events import MonthClosed, PaymasterEvent
from paymaster.domain.limits import RESERVATION_LIFETIME
from paymaster.domain.reports import team_month
from paymaster.domain.schedules import MONTH_CLOSE_MARGIN, STREAM_MARGIN, SWEEP_PERIOD, next_fire, schedules
from paymaster.ports import CounterState, Unpublished
from paymaster.services.month_close import MonthClose
from tests.ledger_entries import DENIAL, ENTRY
from tests.policies import policy_with
from tests.publishers import RecordingBus, RefusingBus

MONTHLY = {
    "name": "search-monthly",
    "when": {"team": "search"},
    "limit": 2000,
    "unit": "cost_per_month",
    "per": ["team"],
    "time_zone": "America/Los_Angeles",
}
POLICY = policy_with([MONTHLY])
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
# 00:45 on 1 December in Los Angeles, when search's schedule runs.
CLOSE_AT = datetime(2026, 12, 1, 8, 45, tzinfo=UTC)


class Counters:
    """The counters a month close reads: `spent` per key, nothing written."""

    def __init__(self, spent: dict[tuple[str, str], int]) -> None:
        self.spent = spent
        self.asked: list[tuple[str, str]] = []

    def counters(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], CounterState]:
        self.asked.extend(keys)
        return {key: CounterState(self.spent.get(key, 0), self.spent.get(key, 0)) for key in keys}


class RefusingOne:
    """Takes every event but the one with `request_id`."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.taken: list[PaymasterEvent] = []

    def publish(self, events: Sequence[PaymasterEvent]) -> list[Unpublished]:
        self.taken += [event for event in events if event.request_id != self.request_id]
        return [
            Unpublished(event, "InternalFailure", "scripted") for event in events if event.request_id == self.request_id
        ]


def at(moment: datetime, request_id: str, **changes: object) -> object:
    return replace(ENTRY, request_id=request_id, admitted_at=moment, **changes)


@pytest.fixture
def ledger() -> MemoryLedger:
    ledger = MemoryLedger()
    # 31 October 23:59 in Los Angeles: October's, though UTC says 1 November.
    ledger.record(at(datetime(2026, 11, 1, 6, 59, tzinfo=UTC), "october", cost=1_000))
    ledger.record(at(datetime(2026, 11, 1, 7, 0, tzinfo=UTC), "first", cost=10, app="ranker"))
    ledger.record(at(datetime(2026, 11, 15, 12, 0, tzinfo=UTC), "mid", cost=20, app="indexer", user=None))
    # 30 November 23:30 in Los Angeles = 1 December 07:30 UTC: November's for search.
    ledger.record(at(datetime(2026, 12, 1, 7, 30, tzinfo=UTC), "late", cost=300, model="gpt-4o"))
    ledger.record(replace(DENIAL, admitted_at=datetime(2026, 11, 20, tzinfo=UTC)))
    # 1 December 00:00 in Los Angeles: December's.
    ledger.record(at(datetime(2026, 12, 1, 8, 0, tzinfo=UTC), "december", cost=4_000))
    return ledger


def closer(ledger: MemoryLedger, reports: MemoryReports, bus: object, counters: Counters | None = None) -> MonthClose:
    counters = counters or Counters({(schema.counter_pk("search-monthly", "team=search"), "2026-11"): 330})
    return MonthClose(POLICY, ledger, reports, counters, bus)  # type: ignore[arg-type]


def test_november_in_los_angeles_holds_the_calls_admitted_from_its_first_to_its_last_local_midnight(
    ledger: MemoryLedger,
) -> None:
    reports, bus = MemoryReports(), RecordingBus()

    closed = closer(ledger, reports, bus).close("search", CLOSE_AT)

    assert (closed.month, closed.written, closed.published) == ("2026-11", True, True)
    report = reports.report("search", "2026-11")
    assert report is not None
    assert report.published
    month = report.report
    assert (month.starts_at, month.ends_at) == (
        datetime(2026, 11, 1, 7, tzinfo=UTC),
        datetime(2026, 12, 1, 8, tzinfo=UTC),
    )
    assert (month.totals.calls, month.totals.cost_usd_micros, month.totals.denials) == (3, 330, 1)
    assert [(row.name, row.totals.cost_usd_micros) for row in month.by_model] == [("gpt-4o", 300), ("gpt-4o-mini", 30)]
    assert [(row.name, row.totals.calls, row.totals.denials) for row in month.by_app] == [
        ("ranker", 2, 1),
        ("indexer", 1, 0),
    ]
    assert [(row.name, row.totals.cost_usd_micros) for row in month.by_user] == [("u-7", 310), (None, 20)]
    assert [(rule.rule, rule.denials) for rule in month.denials_by_rule] == [("search-monthly", 1)]


def test_each_monthly_budget_reports_its_counter_s_final_spend_against_its_cap(ledger: MemoryLedger) -> None:
    reports, bus = MemoryReports(), RecordingBus()
    counters = Counters({(schema.counter_pk("search-monthly", "team=search"), "2026-11"): 1_234_567})

    closer(ledger, reports, bus, counters).close("search", CLOSE_AT)

    (budget,) = reports.reports["search", "2026-11"].report.budgets
    assert (budget.rule, budget.scope, budget.window, budget.spent, budget.cap) == (
        "search-monthly",
        "team=search",
        "2026-11",
        1_234_567,
        2_000_000_000,
    )
    assert counters.asked == [("RULE#search-monthly#team=search", "2026-11")]


def test_closing_a_month_twice_writes_one_report_and_publishes_one_event(ledger: MemoryLedger) -> None:
    reports, bus = MemoryReports(), RecordingBus()
    close = closer(ledger, reports, bus)

    first = close.close("search", CLOSE_AT)
    # A later entry cannot change a closed month: the second run reads nothing and writes nothing.
    ledger.record(at(datetime(2026, 11, 20, tzinfo=UTC), "backfilled", cost=99))
    second = close.close("search", CLOSE_AT)

    assert (first.written, first.published, second.written, second.published) == (True, True, False, False)
    (event,) = bus.events
    assert isinstance(event, MonthClosed)
    assert (event.request_id, event.totals.cost_usd_micros) == ("month-close/search/2026-11", 330)


def test_a_close_the_bus_refused_keeps_its_report_and_the_next_run_publishes_that_report(
    ledger: MemoryLedger,
) -> None:
    reports = MemoryReports()

    with pytest.raises(EventNotPublishedError, match="month-close/search/2026-11"):
        closer(ledger, reports, RefusingBus()).close("search", CLOSE_AT)
    stored = reports.report("search", "2026-11")
    assert stored is not None
    assert not stored.published

    bus = RecordingBus()
    again = closer(ledger, reports, bus).close("search", datetime(2026, 12, 1, 8, 50, tzinfo=UTC))

    assert (again.written, again.published) == (False, True)
    assert bus.events == [stored.report]
    assert reports.reports["search", "2026-11"].published


def test_a_november_the_bus_refused_on_every_retry_is_published_by_december_s_close(ledger: MemoryLedger) -> None:
    reports = MemoryReports()
    with pytest.raises(EventNotPublishedError):
        closer(ledger, reports, RefusingBus()).close("search", CLOSE_AT)
    bus = RecordingBus()

    december = closer(ledger, reports, bus).close("search", datetime(2027, 1, 1, 8, 45, tzinfo=UTC))

    assert (december.month, december.published, december.earlier_published) == ("2026-12", True, ("2026-11",))
    assert [event.request_id for event in bus.events] == ["month-close/search/2026-11", "month-close/search/2026-12"]
    assert reports.unpublished("search") == []


def test_an_earlier_report_is_published_even_when_this_month_s_was_already(ledger: MemoryLedger) -> None:
    reports, bus = MemoryReports(), RecordingBus()
    close = closer(ledger, reports, bus)
    with pytest.raises(EventNotPublishedError):
        closer(ledger, reports, RefusingBus()).close("search", CLOSE_AT, month="2026-10")
    close.close("search", CLOSE_AT, month="2026-09")
    bus.events.clear()

    # A run by hand of the already published September finds October unpublished: it is not
    # September's to publish (later), but November's run does.
    assert close.close("search", CLOSE_AT, month="2026-09").earlier_published == ()
    november = close.close("search", CLOSE_AT)

    assert (november.published, november.earlier_published) == (True, ("2026-10",))
    assert [event.request_id for event in bus.events] == ["month-close/search/2026-10", "month-close/search/2026-11"]


def test_a_refused_earlier_report_still_lets_this_month_go_out_and_fails_the_run_for_its_retry(
    ledger: MemoryLedger,
) -> None:
    reports = MemoryReports()
    with pytest.raises(EventNotPublishedError):
        closer(ledger, reports, RefusingBus()).close("search", CLOSE_AT, month="2026-10")
    bus = RefusingOne("month-close/search/2026-10")

    with pytest.raises(EventNotPublishedError, match="month-close/search/2026-10"):
        closer(ledger, reports, bus).close("search", CLOSE_AT)

    assert [event.request_id for event in bus.taken] == ["month-close/search/2026-11"]
    assert [stored.report.month for stored in reports.unpublished("search")] == ["2026-10"]


def test_the_month_closed_is_the_one_before_the_scheduled_time_in_the_team_s_zone(ledger: MemoryLedger) -> None:
    reports = MemoryReports()
    close = closer(ledger, reports, RecordingBus())

    # 23:30 on 30 November in Los Angeles: November is not over there, October is closed.
    assert close.close("search", datetime(2026, 12, 1, 7, 30, tzinfo=UTC)).month == "2026-10"
    assert reports.reports["search", "2026-10"].report.totals.cost_usd_micros == 1_000
    # support's zone is Europe/Berlin: 00:45 on 1 December there is 23:45 UTC on 30 November.
    assert close.close("support", datetime(2026, 11, 30, 23, 45, tzinfo=UTC)).month == "2026-11"


def test_a_month_named_by_hand_is_closed_instead_of_the_scheduled_one(ledger: MemoryLedger) -> None:
    reports = MemoryReports()

    closed = closer(ledger, reports, RecordingBus()).close("search", CLOSE_AT, month="2026-10")

    assert closed.month == "2026-10"
    assert reports.reports["search", "2026-10"].report.totals.cost_usd_micros == 1_000


@pytest.mark.parametrize(
    ("now", "month"),
    [
        # 00:44:59 on 1 December in Los Angeles: a hold taken at 23:59 may still be charged.
        (datetime(2026, 12, 1, 8, 44, 59, tzinfo=UTC), None),
        # a month named by hand is held to the same margin, and December has not even ended.
        (CLOSE_AT, "2026-12"),
    ],
)
def test_a_month_whose_last_calls_may_not_be_in_the_ledger_yet_is_refused_and_nothing_written(
    ledger: MemoryLedger, now: datetime, month: str | None
) -> None:
    reports, bus = MemoryReports(), RecordingBus()

    with pytest.raises(MonthNotOverError, match=r"search's 2026-1[12] cannot be closed before 202[67]-") as refused:
        closer(ledger, reports, bus).close("search", now, month=month)

    assert refused.value.closable_at == team_month(month or "2026-11", LOS_ANGELES).end + MONTH_CLOSE_MARGIN
    assert (reports.reports, bus.events) == ({}, [])


def test_the_scheduled_close_waits_for_a_call_admitted_at_the_month_s_last_second_to_reach_the_ledger(
    ledger: MemoryLedger,
) -> None:
    """A stream admitted at 23:59:59 on 30 November that crashed: its hold expires at 00:19:59,
    the sweeper charges it by 00:20:59, the ledger has it within STREAM_MARGIN — before 00:45."""
    (schedule,) = [s for s in schedules(POLICY) if s.job == "month-close" and s.team == "search"]
    fires_at = next_fire(schedule, datetime(2026, 11, 30, tzinfo=UTC), start=CLOSE_AT)
    admitted = datetime(2026, 12, 1, 7, 59, 59, tzinfo=UTC)
    assert fires_at >= admitted + RESERVATION_LIFETIME + SWEEP_PERIOD + STREAM_MARGIN
    ledger.record(at(admitted, "crashed", cost=5))
    reports = MemoryReports()

    closer(ledger, reports, RecordingBus()).close("search", fires_at)

    assert reports.reports["search", "2026-11"].report.totals.cost_usd_micros == 335


def test_a_ledger_that_cannot_be_read_fails_the_close_and_writes_nothing(ledger: MemoryLedger) -> None:
    reports, bus = MemoryReports(), RecordingBus()
    ledger.unavailable = True

    with pytest.raises(StoreUnavailableError):
        closer(ledger, reports, bus).close("search", CLOSE_AT)

    assert reports.reports == {}
    assert bus.events == []
