"""The forecast, digest and month-close functions as Lambda runs them: fed their schedule's
input (`events/scheduler/*.json`), against the local AWS stand-in, with the demo policy. What
they decide is the use cases' (tests/services); here: each takes its `now` from the input, reads
and writes the tables, and answers what the schedule's invocation record shows."""

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from paymaster import composition, names
from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.adapters.policy_file import load_policy
from paymaster.domain.errors import MonthNotOverError
from paymaster.domain.schedules import schedules
from paymaster_local.functions import LambdaContext, load_handler
from paymaster_local.resources import ENV_MAIL_QUEUE_URL
from paymaster_local.timers import schedule_event
from tests.functions.gateway import POLICY
from tests.ledger_entries import ENTRY

SAMPLES = Path(__file__).resolve().parents[2] / "events" / "scheduler"
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return loaded


def clear_composition() -> None:
    for built in (composition.forecast, composition.digest, composition.month_close, composition.notifier):
        built.cache_clear()


@pytest.fixture
def environment(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The functions' environment, pointed at the session's moto; their composition rebuilt."""
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(names.ENV_POLICY_FILE, str(POLICY))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    clear_composition()
    yield aws
    clear_composition()


def sqs(aws_url: str) -> Any:
    return boto3.client(
        "sqs", endpoint_url=aws_url, region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
    )


def received(aws_url: str, queue_url: str) -> list[dict[str, Any]]:
    messages = sqs(aws_url).receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [json.loads(message["Body"]) for message in messages.get("Messages", [])]


def record(environment: dict[str, str], aws_url: str, admitted_at: datetime, request_id: str) -> None:
    client = boto3.client(
        "dynamodb", endpoint_url=aws_url, region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
    )
    ledger = DynamoDBLedger(client, environment[names.ENV_LEDGER_TABLE])
    assert ledger.record(replace(ENTRY, request_id=request_id, admitted_at=admitted_at))


@pytest.mark.parametrize(
    ("job", "file"),
    [
        ("sweeper", "sweeper.json"),
        ("forecast", "forecast.json"),
        ("digest", "digest.json"),
        ("month-close", "month-close.json"),
    ],
)
def test_the_runner_sends_each_schedule_the_fields_of_its_sample(job: str, file: str) -> None:
    (schedule, *_) = [s for s in schedules(load_policy(POLICY)) if s.job == job]

    event = schedule_event(schedule, datetime(2026, 12, 1, 8, 45, tzinfo=UTC))

    assert set(event) == set(sample(file))
    assert event["schedule"].endswith(f"schedule/default/{schedule.name}")
    assert event["scheduled_time"] == "2026-12-01T08:45:00Z"


def test_the_month_close_closes_the_month_before_its_scheduled_time_in_the_team_s_zone_once(
    environment: dict[str, str], aws_url: str
) -> None:
    # 23:30 on 30 November in Los Angeles (07:30Z on 1 December): November's, in search's zone.
    record(environment, aws_url, datetime(2026, 12, 1, 7, 30, tzinfo=UTC), "late-november")
    handler = load_handler("month_close")

    first = handler(sample("month-close.json"), LambdaContext("month_close", "1"))
    again = handler(sample("month-close.json"), LambdaContext("month_close", "2"))

    assert first == {"team": "search", "month": "2026-11", "written": True, "published": True, "earlier_published": []}
    assert again["written"] is False
    (event,) = [
        e for e in received(aws_url, environment[names.ENV_EVENTS_QUEUE_URL]) if e["detail-type"] == "MonthClosed"
    ]
    assert event["detail"]["team"] == "search"
    assert event["detail"]["month"] == "2026-11"
    assert event["detail"]["totals"]["calls"] == 1


def test_a_month_named_by_hand_that_is_not_over_fails_the_invocation_and_writes_nothing(
    environment: dict[str, str], aws_url: str
) -> None:
    handler = load_handler("month_close")

    with pytest.raises(MonthNotOverError, match="search's 2026-12 cannot be closed before 2027-01-01T08:45:00"):
        handler(sample("month-close.json") | {"month": "2026-12"}, LambdaContext("month_close", "1"))

    assert received(aws_url, environment[names.ENV_EVENTS_QUEUE_URL]) == []


def test_the_digest_sends_the_team_s_yesterday_in_its_zone_to_its_topic_once_a_day(
    environment: dict[str, str], aws_url: str
) -> None:
    record(environment, aws_url, datetime(2026, 12, 1, 7, 30, tzinfo=UTC), "late-november")
    handler = load_handler("digest")

    first = handler(sample("digest.json"), LambdaContext("digest", "1"))
    again = handler(sample("digest.json"), LambdaContext("digest", "2"))

    assert first["team"] == "search"
    assert first["sent"] is True
    assert "2026-11-30" in first["subject"]
    assert again == {"team": "search", "sent": False, "subject": None}
    (mail,) = received(aws_url, environment[ENV_MAIL_QUEUE_URL])
    assert mail["Subject"] == first["subject"]
    assert mail["TopicArn"].endswith(names.alert_topic_name("search"))


def test_the_forecast_projects_at_its_scheduled_time_and_warns_nobody_when_nothing_is_spent(
    environment: dict[str, str], aws_url: str
) -> None:
    handler = load_handler("forecast")

    assert handler(sample("forecast.json"), LambdaContext("forecast", "1")) == {"warned": []}
    assert received(aws_url, environment[ENV_MAIL_QUEUE_URL]) == []
