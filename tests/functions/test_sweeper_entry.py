"""The sweeper function as Lambda runs it — fed its schedule's input, and invoked by the local
runner's timer — against the local DynamoDB stand-in."""

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from paymaster import names, schema
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.settlement_queue import SqsSettlementQueue
from paymaster.adapters.tokenizer import count_tokens
from paymaster.composition import sweeper
from paymaster.domain.chat import ChatRequest
from paymaster.domain.identity import Caller
from paymaster.domain.limits import RESERVATION_LIFETIME
from paymaster.domain.schedules import SWEEPER
from paymaster.services.admission import AdmissionService
from paymaster_local.functions import LambdaContext, load_handler
from paymaster_local.timers import ScheduleClock, ScheduledJob, schedule_event
from tests.functions.gateway import POLICY
from tests.policies import policy_with

EVENT = Path(__file__).resolve().parents[2] / "events" / "scheduler" / "sweeper.json"
CONTEXT = LambdaContext("sweeper", "c0ffee")
SEARCH = Caller(team="search", app="ranker", env="prod", principal="search-ranker", arn="arn")
BUDGET = {"name": "budget", "when": {"team": "search"}, "limit": 1, "unit": "cost_per_month"}
REQUEST = ChatRequest.model_validate(
    {"model": "fixed-cost", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 10}
)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture
def environment(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The function's environment, pointed at the session's moto; its composition rebuilt."""
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(names.ENV_POLICY_FILE, str(POLICY))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    sweeper.cache_clear()
    yield aws
    sweeper.cache_clear()


@pytest.fixture
def handler() -> Handler:
    return load_handler("sweeper")


@pytest.fixture
def gateway_at(
    environment: dict[str, str], aws_url: str, wire_to: Callable[[str], DynamoDBWire]
) -> Callable[[datetime], AdmissionService]:
    """A gateway whose clock says `at`, reserving on the function's counters table."""

    def gateway(at: datetime) -> AdmissionService:
        store = DynamoDBCounterStore(wire_to(aws_url), environment[names.ENV_COUNTERS_TABLE])
        queue = SqsSettlementQueue(lambda: None, environment[names.ENV_SETTLEMENT_QUEUE_URL])
        return AdmissionService(policy_with([BUDGET]), store, count_tokens, lambda: at, queue)

    return gateway


def sample() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(EVENT.read_text())
    return loaded


def reservation(environment: dict[str, str], aws_url: str, request_id: str) -> dict[str, Any]:
    client = boto3.client(
        "dynamodb", endpoint_url=aws_url, region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
    )
    key = {
        schema.PARTITION_KEY: {"S": schema.reservation_pk(request_id)},
        schema.SORT_KEY: {"S": schema.RESERVATION_SORT_KEY},
    }
    item: dict[str, Any] = client.get_item(TableName=environment[names.ENV_COUNTERS_TABLE], Key=key)["Item"]
    return item


def crashed_before(gateway_at: Callable[[datetime], AdmissionService], request_id: str) -> AdmissionService:
    """A request admitted a lifetime and a minute ago whose process died before settling."""
    gateway = gateway_at(datetime.now(UTC) - RESERVATION_LIFETIME - timedelta(minutes=1))
    gateway.admit(SEARCH, REQUEST, request_id)
    return gateway


def test_the_runner_sends_what_the_schedule_sends() -> None:
    assert set(schedule_event(SWEEPER, datetime.now(UTC))) == set(sample())


def test_an_expired_hold_is_charged_at_its_reservation_once(
    environment: dict[str, str], handler: Handler, aws_url: str, gateway_at: Callable[[datetime], AdmissionService]
) -> None:
    gateway = crashed_before(gateway_at, "crashed-1")
    (held,) = gateway.usage(SEARCH)
    assert (held.used, held.reserved) == ("0", "0.00001")

    assert handler(sample(), CONTEXT) == {"charged": 1}
    assert handler(sample(), CONTEXT) == {"charged": 0}

    (swept,) = gateway.usage(SEARCH)
    assert (swept.used, swept.reserved) == ("0.00001", "0")
    item = reservation(environment, aws_url, "crashed-1")
    assert item[schema.STATE] == {"S": "expired"}
    assert item[schema.COST] == {"N": "10"}
    assert item[schema.FLAGS] == {"L": [{"S": "expired_unsettled"}]}
    assert item[schema.BILLED_ON] == {"S": "reservation"}


def test_a_hold_within_its_lifetime_is_left_alone(
    environment: dict[str, str], handler: Handler, aws_url: str, gateway_at: Callable[[datetime], AdmissionService]
) -> None:
    gateway = gateway_at(datetime.now(UTC))
    gateway.admit(SEARCH, REQUEST, "in-flight-1")

    assert handler(sample(), CONTEXT) == {"charged": 0}

    assert reservation(environment, aws_url, "in-flight-1")[schema.STATE] == {"S": "held"}
    (usage,) = gateway.usage(SEARCH)
    assert (usage.used, usage.reserved) == ("0", "0.00001")


def test_a_backlog_is_swept_in_several_sweeps_of_one_invocation(
    environment: dict[str, str],
    handler: Handler,
    gateway_at: Callable[[datetime], AdmissionService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for number in range(3):
        crashed_before(gateway_at, f"crashed-{number}")
    monkeypatch.setitem(handler.__globals__, "SWEEP_LIMIT", 2)

    assert handler(sample(), CONTEXT) == {"charged": 3}


@dataclass(frozen=True)
class NearlyOutOfTime(LambdaContext):
    def get_remaining_time_in_millis(self) -> int:
        return 1_000


def test_with_little_time_left_one_sweep_runs_and_the_rest_waits_for_the_next_minute(
    environment: dict[str, str],
    handler: Handler,
    gateway_at: Callable[[datetime], AdmissionService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for number in range(3):
        crashed_before(gateway_at, f"crashed-{number}")
    monkeypatch.setitem(handler.__globals__, "SWEEP_LIMIT", 2)

    assert handler(sample(), NearlyOutOfTime("sweeper", "late")) == {"charged": 2}
    assert handler(sample(), CONTEXT) == {"charged": 1}


def test_the_runner_s_timer_runs_the_sweeper_which_charges_a_crashed_hold(
    environment: dict[str, str], handler: Handler, aws_url: str, gateway_at: Callable[[datetime], AdmissionService]
) -> None:
    crashed_before(gateway_at, "crashed-locally")
    job = ScheduledJob(SWEEPER, handler, ScheduleClock(datetime.now(UTC)))

    assert job.run_once(job.first_fire()) == {"charged": 1}
    assert reservation(environment, aws_url, "crashed-locally")[schema.STATE] == {"S": "expired"}


def test_the_sweeper_s_timer_sweeps_on_its_first_fire_when_the_runner_starts(
    environment: dict[str, str], handler: Handler, aws_url: str, gateway_at: Callable[[datetime], AdmissionService]
) -> None:
    crashed_before(gateway_at, "crashed-before-start")
    stopped = threading.Event()
    answers: list[dict[str, Any]] = []

    def sweep_once(event: dict[str, Any], context: Any) -> dict[str, Any]:
        answers.append(handler(event, context))
        stopped.set()
        return answers[-1]

    ScheduledJob(SWEEPER, sweep_once, ScheduleClock(datetime.now(UTC))).run(stopped)

    assert answers == [{"charged": 1}]
    assert reservation(environment, aws_url, "crashed-before-start")[schema.STATE] == {"S": "expired"}
