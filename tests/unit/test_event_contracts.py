"""The published events' samples (`events/published/`) are the contract; the models keep to it."""

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from paymaster import names
from paymaster.api.errors import status_and_type
from paymaster.domain.errors import BudgetExhaustedError, RateLimitedError
from paymaster.domain.events import (
    BudgetThresholdCrossed,
    CostRecorded,
    MonthClosed,
    PaymasterEvent,
    RequestDenied,
    ReservationExpired,
    TokenUsage,
    request_denied,
)
from paymaster.domain.identity import Caller
from paymaster.domain.limits import Hold, Refusal
from paymaster.domain.policy import Policy
from paymaster.domain.windows import window
from tests.policies import demo_raw

PUBLISHED = Path(__file__).resolve().parents[2] / "events" / "published"
SAMPLES: dict[str, type[PaymasterEvent]] = {
    "cost-recorded.json": CostRecorded,
    "request-denied.json": RequestDenied,
    "reservation-expired.json": ReservationExpired,
    "month-closed.json": MonthClosed,
    "budget-threshold-crossed.json": BudgetThresholdCrossed,
}
ENVELOPE = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
CALLER = Caller(
    team="search",
    app="ranker",
    env="prod",
    principal="search-ranker",
    arn="arn:aws:sts::111111111111:assumed-role/search-ranker/ranker-task-7",
)


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((PUBLISHED / name).read_text())
    return loaded


def as_json(event: PaymasterEvent) -> Any:
    return json.loads(event.model_dump_json())


@pytest.mark.parametrize(("name", "model"), SAMPLES.items())
def test_each_sample_is_an_eventbridge_event_from_paymaster_of_its_model_s_detail_type(
    name: str, model: type[PaymasterEvent]
) -> None:
    event = sample(name)

    assert set(event) == ENVELOPE
    assert event["source"] == names.EVENT_SOURCE
    assert event["detail-type"] == model.detail_type


@pytest.mark.parametrize(("name", "model"), SAMPLES.items())
def test_each_sample_s_detail_validates_and_round_trips_to_the_same_json(
    name: str, model: type[PaymasterEvent]
) -> None:
    detail = sample(name)["detail"]

    parsed = model.model_validate(detail)

    assert as_json(parsed) == detail
    assert list(as_json(parsed)) == list(detail)  # the sample lists the fields in the model's order
    assert model.model_validate_json(parsed.model_dump_json()) == parsed


@pytest.mark.parametrize(("name", "model"), SAMPLES.items())
def test_a_field_the_model_does_not_know_is_refused(name: str, model: type[PaymasterEvent]) -> None:
    detail = sample(name)["detail"] | {"surprise": 1}

    with pytest.raises(ValidationError, match="surprise"):
        model.model_validate(detail)


@pytest.mark.parametrize(("name", "model"), SAMPLES.items())
def test_another_schema_version_is_refused(name: str, model: type[PaymasterEvent]) -> None:
    with pytest.raises(ValidationError, match="version"):
        model.model_validate(sample(name)["detail"] | {"version": 2})


@pytest.mark.parametrize("amount", ["526", 526.0, True, -1])
def test_money_is_a_non_negative_json_integer(amount: object) -> None:
    detail = sample("cost-recorded.json")["detail"] | {"cost_usd_micros": amount}

    with pytest.raises(ValidationError, match="cost_usd_micros"):
        CostRecorded.model_validate(detail)


def test_a_time_without_its_zone_is_refused_and_any_other_zone_is_written_in_utc() -> None:
    detail = sample("reservation-expired.json")["detail"]
    with pytest.raises(ValidationError, match="time zone"):
        ReservationExpired.model_validate(detail | {"time": "2026-11-29T14:25:00.318"})

    berlin = ReservationExpired.model_validate(detail | {"time": "2026-11-29T15:25:00.318+01:00"})

    assert as_json(berlin)["time"] == "2026-11-29T14:25:00.318Z"


def test_cost_recorded_from_the_sample_s_values_is_the_sample_s_detail() -> None:
    event = CostRecorded(
        request_id="b7c5e0f2a94d4c1e8f36a2d9c0e1f4a7",
        time=datetime(2026, 11, 29, 14, 3, 9, 252_000, tzinfo=UTC),
        team="search",
        app="ranker",
        env="prod",
        user="alice",
        principal_arn=CALLER.arn,
        model="gpt-4o-mini",
        downgraded_from=None,
        deployment="openai/gpt-4o-mini",
        tried=("openai/gpt-4o-mini",),
        provider_request_id="req_5f0c8e2d9b7a4e1f",
        usage=TokenUsage(input_tokens=1234, output_tokens=567),
        reserved_usd_micros=810,
        cost_usd_micros=526,  # 1_234 × $0.15/M + 567 × $0.60/M = 525.3 µUSD, rounded up
        billed_on="provider_usage",
        outcome="settled",
        flags=(),
        latency_ms=1840,
        first_token_ms=312,
        metadata={"feature": "query-rewrite"},
    )

    assert as_json(event) == sample("cost-recorded.json")["detail"]


def test_reservation_expired_from_the_sample_s_values_is_the_sample_s_detail() -> None:
    held_until = datetime(2026, 11, 29, 14, 23, 7, tzinfo=UTC)
    event = ReservationExpired(
        request_id="3a9c5e7f1b2d4c6e8a0f2b4d6c8e0a1f",
        time=held_until + timedelta(minutes=1, seconds=53, milliseconds=318),
        team="search",
        app="ranker",
        model="gpt-4o-mini",
        reserved_usd_micros=810,
        cost_usd_micros=810,
        held_until=held_until,
        flags=("expired_unsettled",),
    )

    assert as_json(event) == sample("reservation-expired.json")["detail"]


def demo_policy() -> Policy:
    return Policy.model_validate(demo_raw())


def test_a_refused_budget_makes_the_sample_s_request_denied() -> None:
    policy = demo_policy()
    rule = next(rule for rule in policy.rules if rule.name == "search-monthly")
    now = datetime(2026, 11, 29, 14, 3, 7, 95_000, tzinfo=UTC)
    hold = Hold(rule, "team=search", window(rule.period, rule.zone, now), 3450, rule.cap)
    error = BudgetExhaustedError("Budget exhausted: …", Refusal(hold, used=1_999_998_200), now)

    event = request_denied(
        error,
        CALLER,
        request_id="e41f7a3c9d2b4f6a8c0e1d5b7a9f3c2e",
        model="gpt-4o",
        user="alice",
        metadata={"feature": "query-rewrite"},
    )

    assert as_json(event) == sample("request-denied.json")["detail"]
    assert event.code == error.code
    assert event.status == status_and_type(error)[0]


def test_a_refused_rate_limit_names_its_code_and_window_in_utc() -> None:
    policy = demo_policy()
    rule = next(rule for rule in policy.rules if rule.name == "search-requests")
    now = datetime(2026, 11, 29, 6, 3, 7, tzinfo=timezone(timedelta(hours=-8)))
    hold = Hold(rule, "team=search", window(rule.period, rule.zone, now), 1, rule.cap)
    error = RateLimitedError("Rate limit reached: …", Refusal(hold, used=600), now)

    event = request_denied(error, CALLER, request_id="r1", model="gpt-4o-mini", user=None, metadata={})

    assert (event.code, event.status) == (error.code, status_and_type(error)[0])
    assert as_json(event)["rule"] == {
        "name": "search-requests",
        "scope": "team=search",
        "unit": "requests_per_minute",
        "limit": 600,
        "used": 600,
        "remaining": 0,
        "requested": 1,
        "window": "2026-11-29T14:03Z",
        "resets_at": "2026-11-29T14:04:00.000Z",
    }
    assert as_json(event)["time"] == "2026-11-29T14:03:07.000Z"


def test_the_put_events_entry_carries_source_detail_type_detail_bus_and_time() -> None:
    event = ReservationExpired.model_validate(sample("reservation-expired.json")["detail"])

    entry = event.put_events_entry("paymaster-events")

    assert entry == {
        "Source": "paymaster",
        "DetailType": "ReservationExpired",
        "Detail": event.model_dump_json(),
        "EventBusName": "paymaster-events",
        "Time": int(datetime(2026, 11, 29, 14, 25, tzinfo=UTC).timestamp()),
    }
    assert json.loads(entry["Detail"]) == sample("reservation-expired.json")["detail"]
