"""GET /v1/usage as Lambda serves it: the caller team's spend from the ledger beside its rules;
a bad question is a 400 naming the parameter, a ledger out of reach a 503 — never a 500."""

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from paymaster import names
from paymaster.adapters.memory import MemoryCounterStore, MemoryLedger
from paymaster.adapters.policy_file import load_policy
from paymaster.adapters.settings import Settings
from paymaster.composition import build_gateway
from paymaster.domain.chat import Usage
from paymaster.domain.spend import month_before, utc_month
from tests.functions.gateway import POLICY, RecordingProvider, as_lwa_request, lambda_entry
from tests.ledger_entries import ENTRY

THIS_MONTH = utc_month(datetime.now(UTC))


@pytest.fixture
def ledger() -> MemoryLedger:
    """This month: search's ranker 30 µUSD for u-7 and 9 for nobody; support's 1,000."""
    recorded = MemoryLedger()
    now = datetime.now(UTC)
    for entry in (
        replace(ENTRY, admitted_at=now),
        replace(ENTRY, request_id="r2", admitted_at=now, user=None, cost=9, usage=Usage(5, 2)),
        replace(ENTRY, request_id="r3", admitted_at=now, team="support", app="assistant", cost=1_000),
    ):
        recorded.record(entry)
    return recorded


@pytest.fixture
def gateway(ledger: MemoryLedger, provider: RecordingProvider) -> TestClient:
    return lambda_entry(load_policy(POLICY), MemoryCounterStore(), provider, ledger=ledger)


def usage(gateway: TestClient, event: dict[str, Any], **params: list[str]) -> Any:
    """GET /v1/usage as the sample event's caller (search's ranker), with `params`."""
    asked = dict(event, httpMethod="GET", path="/v1/usage", body=None, multiValueQueryStringParameters=params)
    return gateway.request(**as_lwa_request(asked))


def test_the_callers_team_sees_its_month_to_date_and_last_month(gateway: TestClient, event: dict[str, Any]) -> None:
    response = usage(gateway, event)

    assert response.status_code == 200
    body = response.json()
    assert (body["team"], body["app"]) == ("search", "ranker")
    assert {rule["rule"] for rule in body["rules"]}  # the demo policy's rules, as before
    months = body["spend"]["months"]
    assert [(month["month"], month["to_date"]) for month in months] == [
        (THIS_MONTH, True),
        (month_before(THIS_MONTH), False),
    ]
    assert (months[0]["calls"], months[0]["cost_micro_usd"], months[0]["cost_usd"]) == (2, 39, "0.000039")
    assert months[0]["tokens"] == {"input": 26, "output": 6, "cache_read": 0, "cache_write": 0}
    assert (months[1]["calls"], months[1]["cost_micro_usd"]) == (0, 0)


def test_a_month_by_user_breaks_the_team_down_with_the_unnamed_rest(gateway: TestClient, event: dict[str, Any]) -> None:
    response = usage(gateway, event, month=[THIS_MONTH], by=["user"])

    assert response.status_code == 200
    (month,) = response.json()["spend"]["months"]
    assert (month["by"], month["cost_micro_usd"]) == ("user", 39)
    assert [(row["user"], row["calls"], row["cost_usd"]) for row in month["breakdown"]] == [
        ("u-7", 1, "0.00003"),
        (None, 1, "0.000009"),
    ]


def test_a_month_with_nothing_is_zeros_not_a_404(gateway: TestClient, event: dict[str, Any]) -> None:
    response = usage(gateway, event, month=["2019-02"], by=["model"])

    assert response.status_code == 200
    (month,) = response.json()["spend"]["months"]
    assert (month["month"], month["to_date"], month["calls"], month["cost_usd"], month["breakdown"]) == (
        "2019-02",
        False,
        0,
        "0",
        [],
    )


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"month": ["2026-13"]}, "month"),
        ({"month": ["last"]}, "month"),
        ({"by": ["team"]}, "by"),
        ({"month": ["2026-11"], "by": ["deployment"]}, "by"),
        ({"by": ["app", "model"]}, "by"),
        ({"month": ["2026-11", "2026-12"]}, "month"),
    ],
)
def test_a_bad_question_is_a_400_in_openais_shape_naming_the_parameter(
    gateway: TestClient, event: dict[str, Any], params: dict[str, list[str]], param: str
) -> None:
    response = usage(gateway, event, **params)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_request", param)
    assert response.headers[names.HEADER_REQUEST_ID] == event["requestContext"]["requestId"]


def test_a_ledger_out_of_reach_is_a_503_that_says_so_not_a_partial_answer(
    gateway: TestClient, event: dict[str, Any], ledger: MemoryLedger
) -> None:
    ledger.unavailable = True

    response = usage(gateway, event)

    assert response.status_code == 503
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "ledger_unavailable")
    assert "ledger" in error["message"]


def test_a_gateway_not_told_its_ledger_table_refuses_to_start() -> None:
    settings = Settings(policy_file=POLICY, counters_table="counters", settlement_queue_url="https://sqs.local/q")

    with pytest.raises(ValueError, match=names.ENV_LEDGER_TABLE):
        build_gateway(settings)
