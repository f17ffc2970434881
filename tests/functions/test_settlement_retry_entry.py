"""The settlement-retry function as Lambda runs it — fed the SQS event sample, and fed by the local
runner from the queue the gateway writes to when the counter store cannot take a settlement."""

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from paymaster import names
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.settlement_queue import SqsSettlementQueue, settlement_from_json, settlement_to_json
from paymaster.adapters.tokenizer import count_tokens
from paymaster.composition import settlement_retry
from paymaster.domain.chat import ChatRequest, Usage
from paymaster.domain.errors import StoreUnavailableError
from paymaster.domain.identity import Caller
from paymaster.domain.metering import Reported
from paymaster.ports import Settlement
from paymaster.services.admission import AdmissionService
from paymaster_local.runner import LambdaContext, QueueConsumer, load_handler
from tests.functions.gateway import POLICY
from tests.policies import policy_with

EVENT = Path(__file__).resolve().parents[2] / "events" / "sqs" / "settlement-retry.json"
CONTEXT = LambdaContext("settlement-retry", "c0ffee")
SEARCH = Caller(team="search", app="ranker", env="prod", principal="search-ranker", arn="arn")
BUDGET = {"name": "budget", "when": {"team": "search"}, "limit": 1, "unit": "cost_per_month"}
REQUEST = ChatRequest.model_validate(
    {"model": "fixed-cost", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 10}
)


@pytest.fixture
def environment(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The function's environment, pointed at the session's moto; its composition rebuilt."""
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(names.ENV_POLICY_FILE, str(POLICY))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    settlement_retry.cache_clear()
    yield aws
    settlement_retry.cache_clear()


@pytest.fixture
def handler() -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    return load_handler("settlement_retry")


def sample() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(EVENT.read_text())
    return loaded


def sqs(aws_url: str) -> Any:
    return boto3.client(
        "sqs", endpoint_url=aws_url, region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
    )


def test_the_sample_is_a_settlement(environment: dict[str, str]) -> None:
    (record,) = sample()["Records"]

    settlement = settlement_from_json(record["body"])

    assert settlement_to_json(settlement) == record["body"]
    assert (settlement.outcome, settlement.cost, settlement.fence) == ("settled", 30, False)
    assert settlement.call is not None
    assert settlement.call.deployment == "openai/gpt-4o-mini"


def test_a_settlement_queued_before_the_ledger_existed_still_settles(environment: dict[str, str]) -> None:
    """A gateway deployed before `billed_on`, `call` and `charged` existed may have queued
    messages that the new retry function receives: they settle, with nothing to record of the call."""
    (record,) = sample()["Records"]
    older = json.loads(record["body"])
    del older["billed_on"], older["call"], older["charged"]

    settlement = settlement_from_json(json.dumps(older))

    assert (settlement.billed_on, settlement.call, settlement.charged, settlement.cost) == (None, None, None, 30)


def test_a_charge_without_the_provider_s_usage_keeps_its_charged_tokens_on_the_queue() -> None:
    (record,) = sample()["Records"]
    sampled = settlement_from_json(record["body"])
    cut = replace(sampled, outcome="charged_delivered", usage=None, billed_on="delivered_text", charged=Usage(21, 9))

    assert settlement_from_json(settlement_to_json(cut)) == cut


def test_a_settlement_for_no_reservation_is_done_not_retried(
    environment: dict[str, str], handler: Callable[[dict[str, Any], Any], dict[str, Any]]
) -> None:
    assert handler(sample(), CONTEXT) == {"batchItemFailures": []}


def test_a_record_that_is_no_settlement_is_reported_failed_so_it_is_not_lost(
    environment: dict[str, str], handler: Callable[[dict[str, Any], Any], dict[str, Any]]
) -> None:
    event = sample()
    event["Records"].append(dict(event["Records"][0], messageId="broken", body='{"not": "a settlement"}'))

    assert handler(event, CONTEXT) == {"batchItemFailures": [{"itemIdentifier": "broken"}]}


def test_while_the_store_is_unavailable_the_invocation_fails_so_the_whole_batch_comes_back(
    environment: dict[str, str],
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")

    # Powertools fails the invocation when no record succeeded: a Lambda error the ops alarms see.
    with pytest.raises(BatchProcessingError, match="All records failed"):
        handler(sample(), CONTEXT)


class DownAtSettlement(DynamoDBCounterStore):
    """The counter store, failing every settlement as if DynamoDB had gone away after admission."""

    def settle(self, settlement: Settlement) -> bool:
        raise StoreUnavailableError("the counter store failed: ServiceUnavailable")


def test_a_settlement_the_gateway_queued_is_applied_by_the_function_the_runner_feeds(
    environment: dict[str, str],
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    aws_url: str,
    wire_to: Callable[[str], DynamoDBWire],
) -> None:
    queue_url = environment[names.ENV_SETTLEMENT_QUEUE_URL]
    policy = policy_with([BUDGET])
    down = DownAtSettlement(wire_to(aws_url), environment[names.ENV_COUNTERS_TABLE])
    gateway = AdmissionService(
        policy, down, count_tokens, lambda: datetime.now(UTC), SqsSettlementQueue(lambda: sqs(aws_url), queue_url)
    )
    admitted = gateway.admit(SEARCH, REQUEST, "queued-1")
    gateway.settle(admitted, Reported(Usage(30, 7)))
    (before,) = gateway.usage(SEARCH)
    assert (before.used, before.reserved) == ("0", "0.00001")

    consumer = QueueConsumer(sqs(aws_url), queue_url, handler, "settlement-retry", "us-east-1")
    assert consumer.poll_once(wait_s=0) == 1

    (after,) = gateway.usage(SEARCH)
    assert (after.used, after.reserved) == ("0.000007", "0")
    assert consumer.poll_once(wait_s=0) == 0  # deleted once applied


def test_a_record_that_keeps_failing_ends_in_the_dead_letter_queue(
    environment: dict[str, str], handler: Callable[[dict[str, Any], Any], dict[str, Any]], aws_url: str
) -> None:
    client = sqs(aws_url)
    dlq = client.create_queue(QueueName="retry-test-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = client.create_queue(
        QueueName="retry-test",
        Attributes={
            "VisibilityTimeout": "0",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
        },
    )["QueueUrl"]
    client.send_message(QueueUrl=queue, MessageBody="not a settlement")
    consumer = QueueConsumer(client, queue, handler, "settlement-retry", "us-east-1")

    handled = [consumer.poll_once(wait_s=0) for _ in range(3)]

    assert handled == [0, 0, 0]
    (dead,) = client.receive_message(QueueUrl=dlq)["Messages"]
    assert dead["Body"] == "not a settlement"
