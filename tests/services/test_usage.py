"""GET /v1/usage's use case on the in-memory counters and ledger: rules and spend, one team only."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from paymaster.adapters.memory import MemoryCounterStore, MemoryLedger, MemorySettlementQueue
from paymaster.adapters.tokenizer import count_tokens
from paymaster.domain.chat import Usage
from paymaster.domain.errors import LedgerUnavailableError, StoreUnavailableError
from paymaster.domain.identity import Caller
from paymaster.domain.ledger import Totals
from paymaster.domain.spend import Share, SpendQuery
from paymaster.services.admission import AdmissionService
from paymaster.services.usage import UsageService
from tests.ledger_entries import ENTRY
from tests.policies import policy_with

NOW = datetime(2026, 12, 20, 9, 0, tzinfo=UTC)
SEARCH = Caller(team="search", app="ranker", env="prod", principal="search-ranker", arn="arn")
BUDGET = {"name": "search-budget", "when": {"team": "search"}, "limit": 100, "unit": "cost_per_month"}
NOVEMBER = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)


@pytest.fixture
def ledger() -> MemoryLedger:
    """December: ranker 30 + 9 (u-7, then no user), indexer 12 on nova-lite (u-8); November: 5.
    Support spent 1,000 in December, which search must never see."""
    recorded = MemoryLedger()
    for entry in (
        ENTRY,  # search / ranker / gpt-4o-mini / u-7, 30 µUSD, 21 in 4 out, 2026-12-03
        replace(ENTRY, request_id="r2", user=None, cost=9, usage=Usage(5, 2)),
        replace(ENTRY, request_id="r3", app="indexer", model="nova-lite", user="u-8", cost=12, usage=None),
        replace(ENTRY, request_id="r4", admitted_at=NOVEMBER, cost=5, usage=Usage(1, 1)),
        replace(ENTRY, request_id="r5", team="support", app="assistant", cost=1_000),
    ):
        recorded.record(entry)
    return recorded


@pytest.fixture
def store() -> MemoryCounterStore:
    return MemoryCounterStore(clock=lambda: NOW)


def usage_service(ledger: MemoryLedger, store: MemoryCounterStore) -> UsageService:
    admission = AdmissionService(policy_with([BUDGET]), store, count_tokens, lambda: NOW, MemorySettlementQueue())
    return UsageService(admission, ledger, lambda: NOW)


def test_nothing_asked_is_the_teams_month_to_date_and_last_month_beside_its_rules(
    ledger: MemoryLedger, store: MemoryCounterStore
) -> None:
    usage = usage_service(ledger, store).usage(SEARCH, SpendQuery())

    assert [rule.rule for rule in usage.rules] == ["search-budget"]
    assert [(month.month, month.to_date, month.totals) for month in usage.months] == [
        ("2026-12", True, Totals(3, 51, 26, 6)),
        ("2026-11", False, Totals(1, 5, 1, 1)),
    ]
    assert usage.as_of == NOW
    assert all(month.by is None and month.breakdown == () for month in usage.months)


def test_a_month_by_app_lists_each_app_of_the_team_and_no_other_teams(
    ledger: MemoryLedger, store: MemoryCounterStore
) -> None:
    (december,) = usage_service(ledger, store).usage(SEARCH, SpendQuery(by="app")).months

    assert (december.month, december.to_date, december.by) == ("2026-12", True, "app")
    assert december.breakdown == (Share("ranker", Totals(2, 39, 26, 6)), Share("indexer", Totals(1, 12)))
    assert december.totals == Totals(3, 51, 26, 6)


def test_by_user_the_calls_that_named_none_are_one_row(ledger: MemoryLedger, store: MemoryCounterStore) -> None:
    (december,) = usage_service(ledger, store).usage(SEARCH, SpendQuery("2026-12", "user")).months

    assert december.breakdown == (
        Share("u-7", Totals(1, 30, 21, 4)),
        Share("u-8", Totals(1, 12)),
        Share(None, Totals(1, 9, 5, 2)),
    )
    assert december.totals == Totals(3, 51, 26, 6)


def test_a_past_month_is_complete_and_a_month_with_nothing_is_zeros(
    ledger: MemoryLedger, store: MemoryCounterStore
) -> None:
    service = usage_service(ledger, store)

    (november,) = service.usage(SEARCH, SpendQuery("2026-11", "model")).months
    (empty,) = service.usage(SEARCH, SpendQuery("2025-01", "model")).months
    (untouched,) = service.usage(SEARCH, SpendQuery("2025-01")).months

    assert (november.to_date, november.breakdown) == (False, (Share("gpt-4o-mini", Totals(1, 5, 1, 1)),))
    assert (empty.totals, empty.breakdown) == (Totals(), ())
    assert (untouched.month, untouched.to_date, untouched.totals) == ("2025-01", False, Totals())


def test_a_ledger_that_cannot_be_read_fails_the_whole_answer_naming_the_ledger(
    ledger: MemoryLedger, store: MemoryCounterStore
) -> None:
    ledger.unavailable = True

    with pytest.raises(LedgerUnavailableError) as failed:
        usage_service(ledger, store).usage(SEARCH, SpendQuery())

    assert failed.value.code == "ledger_unavailable"
    assert "ledger" in failed.value.message


def test_counters_that_cannot_be_read_fail_it_as_the_counter_store(
    ledger: MemoryLedger, store: MemoryCounterStore
) -> None:
    store.fail_next("counters", StoreUnavailableError("the counter store is unreachable"))

    with pytest.raises(StoreUnavailableError) as failed:
        usage_service(ledger, store).usage(SEARCH, SpendQuery())

    assert not isinstance(failed.value, LedgerUnavailableError)


def test_the_memory_ledger_records_an_entry_once() -> None:
    ledger = MemoryLedger()

    assert ledger.record(ENTRY) is True
    assert ledger.record(ENTRY) is False
    assert ledger.breakdown("search", "2026-12", "model") == {"gpt-4o-mini": Totals(1, 30, 21, 4)}
