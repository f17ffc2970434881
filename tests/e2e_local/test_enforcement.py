"""Limits and budgets held exactly through the whole local stack, driven by the openai SDK."""

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import openai
import pytest
from openai import OpenAI

from paymaster import names
from paymaster.client import SigV4Auth
from paymaster.domain.events import RequestDenied
from paymaster_local.credentials import session_for
from paymaster_local.resources import COST_EVENTS_QUEUE
from paymaster_local.stack import LocalStack
from tests.e2e_local.conftest import stack_with_rules

LONG_PROMPT = " ".join(f"word{i}" for i in range(40))  # the fake answers max_tokens words to it

RULES: list[dict[str, Any]] = [
    # 10 µUSD per request (10 output tokens at $1/M, input free): room for exactly 37.
    {"name": "exact-37", "when": {"team": "support", "model": "fixed-cost"}, "limit": "0.000379",
     "unit": "cost_per_month", "per": ["team"]},
    {"name": "dev-three-a-day", "when": {"env": "dev"}, "limit": 3, "unit": "requests_per_day",
     "per": ["team", "app"]},
    {"name": "haiku-budget", "when": {"team": "support", "model": ["claude-haiku", "nova-lite"]}, "limit": 1,
     "unit": "cost_per_month", "per": ["team"], "actions": [{"at": 1, "downgrade_to": "nova-lite"}]},
    {"name": "search-budget", "when": {"team": "search"}, "limit": 50, "unit": "cost_per_month",
     "per": ["team"], "time_zone": "America/Los_Angeles"},
]  # fmt: skip


@pytest.fixture(scope="module")
def enforcing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with stack_with_rules(RULES, tmp_path_factory.mktemp("enforcing")) as running:
        yield running


@pytest.fixture(scope="module")
def client_for(enforcing: LocalStack) -> Callable[..., OpenAI]:
    def client(profile: str, max_retries: int = 0, **http: Any) -> OpenAI:
        auth = SigV4Auth(session=session_for(enforcing.credentials, profile))
        return OpenAI(
            base_url=enforcing.url + "/v1",
            api_key="unused",
            http_client=httpx.Client(auth=auth, **http),
            max_retries=max_retries,
        )

    return client


def ask(client: OpenAI, model: str, **extra: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": LONG_PROMPT}], **extra)


def usage_of(client: OpenAI) -> dict[str, dict[str, str]]:
    body = client.get("/usage", cast_to=httpx.Response).json()
    return {rule["rule"]: rule for rule in body["rules"]}


def test_200_racing_requests_on_room_for_37_admit_exactly_37(client_for: Callable[..., OpenAI]) -> None:
    client = client_for("support-assistant")

    def one(_: int) -> str:
        try:
            ask(client, "fixed-cost", max_tokens=10)
        except openai.RateLimitError as refused:
            return str(refused.code)
        return "admitted"

    with ThreadPoolExecutor(32) as pool:
        outcomes = list(pool.map(one, range(200)))

    assert outcomes.count("admitted") == 37
    assert outcomes.count("insufficient_quota") == 163
    budget = usage_of(client)["exact-37"]
    assert (budget["used"], budget["reserved"], budget["remaining"]) == ("0.00037", "0", "0.000009")
    assert budget["limit"] == "0.000379"


def test_spent_budget_answers_insufficient_quota_and_the_sdk_does_not_retry(
    client_for: Callable[..., OpenAI],
) -> None:
    sent: list[httpx.Request] = []
    client = client_for("support-assistant", max_retries=3, event_hooks={"request": [sent.append]})
    for _ in range(40):  # spend what the racing test may have left
        try:
            ask(client, "fixed-cost", max_tokens=10)
        except openai.RateLimitError:
            break
    sent.clear()

    with pytest.raises(openai.RateLimitError) as refused:
        ask(client, "fixed-cost", max_tokens=10)

    assert len(sent) == 1  # x-should-retry: false
    response = refused.value.response
    assert response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert error["paymaster"] | {"resets_at": "-"} == {
        "rule": "exact-37",
        "scope": "team=support",
        "unit": "cost_per_month",
        "limit": "0.000379",
        "used": "0.00037",
        "remaining": "0.000009",
        "requested": "0.00001",
        "window": error["paymaster"]["window"],
        "resets_at": "-",
    }
    assert "exact-37" in error["message"]
    assert "remaining 0.000009" in error["message"]


def test_rate_limit_answers_with_retry_after_and_openai_headers(client_for: Callable[..., OpenAI]) -> None:
    client = client_for("search-ranker-dev")
    for _ in range(3):
        ask(client, "gpt-4o-mini", max_tokens=5)

    with pytest.raises(openai.RateLimitError) as refused:
        ask(client, "gpt-4o-mini", max_tokens=5)

    headers = refused.value.response.headers
    error = refused.value.response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert error["paymaster"]["rule"] == "dev-three-a-day"
    assert error["paymaster"]["scope"] == "team=search/app=ranker-dev"
    assert (error["paymaster"]["limit"], error["paymaster"]["used"]) == ("3", "3")
    assert 0 < int(headers["retry-after"]) <= 86_400
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == f"{headers['retry-after']}s"


def drained(sqs: Any, queue_url: str) -> Iterator[dict[str, Any]]:
    """Every message on the queue (the racing test's refusals are there too), deleted as read."""
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            yield json.loads(message["Body"])


def test_a_429_is_on_the_bus_as_request_denied_by_the_time_it_is_answered(
    enforcing: LocalStack, client_for: Callable[..., OpenAI]
) -> None:
    """The local stack's rule (`source: paymaster`) delivers the bus's events to the queue the
    banner's `paymaster events tail` line names."""
    client = client_for("search-ranker-dev")
    for _ in range(3):  # dev-three-a-day: spent here or by the test above
        try:
            ask(client, "gpt-4o-mini", max_tokens=5)
        except openai.RateLimitError:
            break
    with pytest.raises(openai.RateLimitError) as refused:
        ask(client, "gpt-4o-mini", max_tokens=5)
    request_id = refused.value.response.headers[names.HEADER_REQUEST_ID]
    sqs = boto3.client(
        "sqs", endpoint_url=enforcing.aws_url, region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
    )
    assert enforcing.events_queue_url == sqs.get_queue_url(QueueName=COST_EVENTS_QUEUE)["QueueUrl"]

    denied = next(
        body for body in drained(sqs, enforcing.events_queue_url) if body["detail"].get("request_id") == request_id
    )

    assert denied["detail-type"] == names.REQUEST_DENIED
    event = RequestDenied.model_validate(denied["detail"])
    assert (event.team, event.app, event.env, event.model) == ("search", "ranker-dev", "dev", "gpt-4o-mini")
    assert (event.rule.name, event.rule.limit, event.rule.used, event.code) == (
        "dev-three-a-day", 3, 3, "rate_limit_exceeded"
    )  # fmt: skip


def test_success_carries_the_tightest_budget_and_usage_reports_it(client_for: Callable[..., OpenAI]) -> None:
    client = client_for("search-ranker")

    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=20
    )
    usage = usage_of(client)["search-budget"]

    assert raw.headers["x-paymaster-budget-rule"] == "search-budget"
    assert raw.headers["x-paymaster-budget-limit"] == "50"
    assert raw.headers["x-paymaster-budget-unit"] == "cost_per_month"
    assert float(raw.headers["x-paymaster-budget-remaining"]) < 50
    assert raw.headers["x-paymaster-budget-reset"] == usage["resets_at"]
    assert usage["resets_at"].endswith(("-08:00", "-07:00"))  # Los Angeles midnight
    assert float(usage["used"]) > 0
    assert usage["reserved"] == "0"


def test_budget_past_its_downgrade_threshold_is_served_by_the_cheaper_model(
    client_for: Callable[..., OpenAI],
) -> None:
    raw = client_for("support-assistant").chat.completions.with_raw_response.create(
        model="claude-haiku", messages=[{"role": "user", "content": "hello"}]
    )

    assert raw.headers["x-paymaster-downgraded-from"] == "claude-haiku"
    assert raw.headers["x-paymaster-deployment"] == "bedrock-us-east-1/us.amazon.nova-lite-v1:0"
    assert raw.parse().model == "nova-lite"


def test_client_gone_mid_stream_leaves_nothing_reserved(client_for: Callable[..., OpenAI]) -> None:
    client = client_for("search-ranker")
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": LONG_PROMPT}], stream=True
    )
    next(iter(stream)), next(iter(stream))
    stream.close()

    for _ in range(50):  # the gateway settles once it notices the disconnect
        if usage_of(client)["search-budget"]["reserved"] == "0":
            break
        time.sleep(0.1)
    assert usage_of(client)["search-budget"]["reserved"] == "0"
