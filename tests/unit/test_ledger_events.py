"""The event each ledger entry publishes, made from the entry alone: a charged call's CostRecorded,
an expired hold's ReservationExpired, nothing for a release — each the contract's sample when
the entry holds the sample's values."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from paymaster.adapters.dynamodb_ledger import ledger_entry
from paymaster.domain.chat import Usage
from paymaster.domain.events import (
    TOKENS_NOT_RECORDED,
    CostRecorded,
    ReservationExpired,
    cost_recorded,
    ledger_event,
    reservation_expired,
)
from paymaster.domain.ledger import LedgerEntry

EVENTS = Path(__file__).resolve().parents[2] / "events"
ADMITTED = datetime(2026, 11, 29, 14, 3, 7, 412_000, tzinfo=UTC)
SETTLED = LedgerEntry(
    request_id="b7c5e0f2a94d4c1e8f36a2d9c0e1f4a7",
    hop=0,
    admitted_at=ADMITTED,
    team="search",
    app="ranker",
    env="prod",
    principal="arn:aws:sts::111111111111:assumed-role/search-ranker/ranker-task-7",
    model="gpt-4o-mini",
    outcome="settled",
    reserved=810,
    cost=526,
    user="alice",
    metadata=(("feature", "query-rewrite"),),
    billed_on="provider_usage",
    usage=Usage(1234, 567),
    deployment="openai/gpt-4o-mini",
    tried=("openai/gpt-4o-mini",),
    provider_request_id="req_5f0c8e2d9b7a4e1f",
    latency_ms=1840,
    first_token_ms=312,
    held_until=datetime(2026, 11, 29, 14, 23, 7, tzinfo=UTC),
)
# The sweeper's settlement of a hold never settled: no call, the whole reservation, flagged.
EXPIRED = LedgerEntry(
    request_id="3a9c5e7f1b2d4c6e8a0f2b4d6c8e0a1f",
    hop=0,
    admitted_at=datetime(2026, 11, 29, 14, 3, 7, tzinfo=UTC),
    team="search",
    app="ranker",
    env="prod",
    principal="arn:aws:sts::111111111111:assumed-role/search-ranker/ranker-task-7",
    model="gpt-4o-mini",
    outcome="expired",
    reserved=810,
    cost=810,
    billed_on="reservation",
    flags=("expired_unsettled",),
    held_until=datetime(2026, 11, 29, 14, 23, 7, tzinfo=UTC),
)
SWEPT = datetime(2026, 11, 29, 14, 25, 0, 318_000, tzinfo=UTC)


def detail(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / "published" / name).read_text())["detail"]
    return loaded


def as_json(event: CostRecorded | ReservationExpired) -> Any:
    return json.loads(event.model_dump_json())


def test_a_settled_entry_with_the_sample_s_values_publishes_the_sample_s_cost_recorded() -> None:
    event = ledger_event(SETTLED, written_at=SWEPT)

    assert isinstance(event, CostRecorded)
    assert as_json(event) == detail("cost-recorded.json")
    assert event.time == ADMITTED + timedelta(milliseconds=1840)  # settled as the gateway measured it


def test_an_expired_entry_with_the_sample_s_values_publishes_the_sample_s_reservation_expired() -> None:
    event = ledger_event(EXPIRED, written_at=SWEPT)

    assert isinstance(event, ReservationExpired)
    assert as_json(event) == detail("reservation-expired.json")


def test_an_entry_read_off_the_stream_sample_makes_a_cost_recorded_its_model_reads_back() -> None:
    records = json.loads((EVENTS / "dynamodb" / "counters-stream.json").read_text())["Records"]
    entry = ledger_entry(records[0])
    assert entry is not None

    event = cost_recorded(entry)

    assert CostRecorded.model_validate_json(event.model_dump_json()) == event
    assert list(as_json(event)) == list(detail("cost-recorded.json"))
    assert (event.request_id, event.cost_usd_micros, event.usage.input_tokens) == (entry.request_id, 6, 21)


def test_a_release_publishes_nothing_the_fallback_s_settled_hop_is_the_call() -> None:
    """A fallback: the failed model's hold released (hop 0), the fallback's settled (hop 1) under
    the same request id; one CostRecorded per request, naming every deployment tried."""
    released = replace(SETTLED, outcome="released", cost=0, usage=None, billed_on="released")
    tried = ("bedrock/nova-lite", "openai/gpt-4o-mini")
    fallback = replace(SETTLED, hop=1, tried=tried)

    assert ledger_event(released, written_at=SWEPT) is None
    event = ledger_event(fallback, written_at=SWEPT)
    assert isinstance(event, CostRecorded)
    assert (event.request_id, event.tried) == (SETTLED.request_id, tried)


@pytest.mark.parametrize(
    ("outcome", "billed_on", "flag"),
    [
        ("charged_delivered", "delivered_text", "usage_from_delivered_text"),
        ("charged_reservation", "reservation", "usage_unknown"),
    ],
)
def test_a_charge_without_the_provider_s_usage_reports_the_tokens_it_charged(
    outcome: str, billed_on: str, flag: str
) -> None:
    charged = replace(
        SETTLED, outcome=outcome, billed_on=billed_on, usage=None, charged_usage=Usage(1234, 90), flags=(flag,)
    )

    event = cost_recorded(charged)

    assert (event.outcome, event.billed_on, event.flags) == (outcome, billed_on, (flag,))
    assert (event.usage.input_tokens, event.usage.output_tokens) == (1234, 90)


def test_a_charge_whose_tokens_were_not_recorded_says_so_and_keeps_its_cost() -> None:
    """Settled by a gateway from before the charged tokens were kept (docs/LEDGER.md)."""
    older = replace(
        SETTLED, outcome="charged_reservation", billed_on="reservation", usage=None, flags=("usage_unknown",)
    )

    event = cost_recorded(older)

    assert (event.usage.input_tokens, event.usage.output_tokens, event.cost_usd_micros) == (0, 0, 526)
    assert event.flags == ("usage_unknown", TOKENS_NOT_RECORDED)


def test_an_expired_hold_replayed_without_the_record_s_time_says_when_it_expired() -> None:
    event = ledger_event(EXPIRED, written_at=None)

    assert isinstance(event, ReservationExpired)
    assert event.time == event.held_until == EXPIRED.held_until


def test_an_entry_that_is_not_what_its_event_needs_is_an_error_not_a_made_up_event() -> None:
    with pytest.raises(ValueError, match="not a charged call"):
        cost_recorded(EXPIRED)
    with pytest.raises(ValueError, match="not an expired hold"):
        reservation_expired(SETTLED, SWEPT)
    with pytest.raises(ValueError, match="not an expired hold"):
        reservation_expired(replace(EXPIRED, held_until=None), SWEPT)
    with pytest.raises(ValidationError, match="deployment"):
        cost_recorded(replace(SETTLED, deployment=None))
    with pytest.raises(ValidationError, match="outcome"):  # the contract: a release is no CostRecorded
        CostRecorded.model_validate(detail("cost-recorded.json") | {"outcome": "released"})
