"""The ledger's arithmetic: which UTC month and day an entry belongs to, what it adds to which rollups."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from paymaster import schema
from paymaster.domain.chat import Usage
from paymaster.domain.events import RequestDenied, denied_entry
from paymaster.domain.ledger import Rollup, Totals, rollups, totals
from tests.ledger_entries import DENIAL
from tests.ledger_entries import ENTRY as LEDGER_ENTRY

LOS_ANGELES = timezone(timedelta(hours=-8))
SAMPLE = Path(__file__).resolve().parents[2] / "events" / "published" / "request-denied.json"
ENTRY = replace(LEDGER_ENTRY, usage=Usage(21, 4, 3, 1))


def test_an_entry_belongs_to_the_utc_month_and_day_of_its_admission() -> None:
    """A Los Angeles budget counts 23:30 on Nov 30 in November; the ledger, in UTC, in December."""
    late_in_los_angeles = replace(ENTRY, admitted_at=datetime(2026, 11, 30, 23, 30, tzinfo=LOS_ANGELES))

    assert (late_in_los_angeles.month, late_in_los_angeles.day) == ("2026-12", "2026-12-01")
    assert (ENTRY.month, ENTRY.day) == ("2026-12", "2026-12-03")


@pytest.mark.parametrize(
    ("admitted", "ends"),
    [
        (datetime(2026, 12, 3, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        (datetime(2026, 11, 30, 23, 59, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
    ],
)
def test_a_month_ends_at_the_first_instant_of_the_next_utc_month(admitted: datetime, ends: datetime) -> None:
    assert replace(ENTRY, admitted_at=admitted).month_ends_at == ends


def test_an_entry_adds_to_its_teams_month_app_model_user_day_and_day_model_rollups() -> None:
    assert rollups(ENTRY) == (
        Rollup("search", "2026-12"),
        Rollup("search", "2026-12", "app", "ranker"),
        Rollup("search", "2026-12", "model", "gpt-4o-mini"),
        Rollup("search", "2026-12", "user", "u-7"),
        Rollup("search", "2026-12-03"),
        Rollup("search", "2026-12-03", "model", "gpt-4o-mini"),
    )


def test_a_call_without_a_user_has_no_user_rollup() -> None:
    assert [rollup.dimension for rollup in rollups(replace(ENTRY, user=None))] == [None, "app", "model", None, "model"]


def test_an_entry_adds_one_call_its_cost_and_the_reported_tokens() -> None:
    assert totals(ENTRY) == Totals(
        1, cost=30, input_tokens=21, output_tokens=4, cache_read_tokens=3, cache_write_tokens=1
    )


def test_an_entry_without_reported_usage_adds_its_charge_and_no_tokens() -> None:
    charged = replace(ENTRY, outcome="charged_reservation", usage=None, cost=90, billed_on="reservation")

    assert totals(charged) == Totals(calls=1, cost=90)


@pytest.mark.parametrize(
    ("outcome", "downgraded_from", "decision"),
    [
        ("settled", None, "admitted"),
        ("charged_delivered", "claude-haiku", "downgraded from claude-haiku"),
        ("released", None, "released"),
        ("expired", None, "expired"),
    ],
)
def test_the_decision_says_whether_it_was_admitted_downgraded_released_or_expired(
    outcome: str, downgraded_from: str | None, decision: str
) -> None:
    assert replace(ENTRY, outcome=outcome, downgraded_from=downgraded_from).decision == decision


def test_a_fallbacks_reservation_id_names_its_request_and_hop() -> None:
    assert schema.split_hop("6f1c2e0a~2") == ("6f1c2e0a", 2)
    assert schema.split_hop("6f1c2e0a") == ("6f1c2e0a", 0)
    assert schema.split_hop(schema.hop_id("6f1c2e0a", 2)) == ("6f1c2e0a", 2)  # as the router names a fallback


def test_rollups_of_one_team_and_period_take_one_partition_per_dimension() -> None:
    assert schema.rollup_pk("search", "2026-12", None) == "SPEND#search#2026-12"
    assert schema.rollup_pk("search", "2026-12-03", "model") == "SPEND#search#2026-12-03#model"
    assert schema.calls_pk("search", "2026-12") == "CALLS#search#2026-12"


def test_a_refusal_s_event_is_an_entry_that_cost_nothing_and_keeps_the_rule_s_figures() -> None:
    event = RequestDenied.model_validate(json.loads(SAMPLE.read_text())["detail"])

    entry = denied_entry(event)

    assert (entry.request_id, entry.hop, entry.outcome, entry.decision) == (
        "e41f7a3c9d2b4f6a8c0e1d5b7a9f3c2e",
        0,
        "denied",
        "denied by rule search-monthly",
    )
    assert (entry.cost, entry.reserved, entry.usage, entry.billed_on) == (0, 0, None, None)
    assert entry.admitted == "2026-11-29T14:03:07.095Z"
    assert (entry.team, entry.app, entry.env, entry.user, entry.model) == (
        "search",
        "ranker",
        "prod",
        "alice",
        "gpt-4o",
    )
    assert entry.principal == "arn:aws:sts::111111111111:assumed-role/search-ranker/ranker-task-7"
    assert entry.metadata == (("feature", "query-rewrite"),)
    denial = entry.denial
    assert denial is not None
    assert (denial.code, denial.scope, denial.unit, denial.window) == (
        "insufficient_quota",
        "team=search",
        "cost_per_month",
        "2026-11",
    )
    assert (denial.limit, denial.used, denial.remaining, denial.requested) == (2_000_000_000, 1_999_998_200, 1800, 3450)
    assert denial.resets_at == datetime(2026, 12, 1, 8, tzinfo=UTC)


def test_a_denial_adds_one_denial_and_no_call_cost_or_tokens() -> None:
    assert totals(DENIAL) == Totals(denials=1)
    assert totals(ENTRY).denials == 0
    assert totals(ENTRY) + totals(DENIAL) == Totals(1, 30, 21, 4, 3, 1, denials=1)


def test_a_denial_adds_to_its_teams_month_app_and_rule_and_its_day_and_day_rule_rollups() -> None:
    assert rollups(DENIAL) == (
        Rollup("search", "2026-12"),
        Rollup("search", "2026-12", "app", "ranker"),
        Rollup("search", "2026-12", "rule", "search-monthly"),
        Rollup("search", "2026-12-03"),
        Rollup("search", "2026-12-03", "rule", "search-monthly"),
    )
