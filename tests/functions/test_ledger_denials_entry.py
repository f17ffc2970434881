"""The denials ledger function as Lambda runs it — fed an SQS event holding the RequestDenied
sample as EventBridge delivers it, and fed by the local runner from the queue the local stack's
rule fills when the gateway's publisher puts a denial on the bus."""

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from paymaster import names
from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.composition import build_event_publisher, denial_recorder
from paymaster.domain.events import RequestDenied
from paymaster.domain.ledger import Rollup, Totals
from paymaster_local.runner import LambdaContext, QueueConsumer, load_handler, sqs_event
from tests.local_aws import local_client

SAMPLE = Path(__file__).resolve().parents[2] / "events" / "published" / "request-denied.json"
CONTEXT = LambdaContext("ledger-denials", "c0ffee")
SAMPLE_REQUEST = "e41f7a3c9d2b4f6a8c0e1d5b7a9f3c2e"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:paymaster-denials"
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture
def environment(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The function's environment, pointed at the session's moto; its composition rebuilt."""
    monkeypatch.setenv(names.ENV_LEDGER_TABLE, aws[names.ENV_LEDGER_TABLE])
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    denial_recorder.cache_clear()
    yield aws
    denial_recorder.cache_clear()


@pytest.fixture
def handler() -> Handler:
    return load_handler("ledger_denials")


@pytest.fixture
def ledger(environment: dict[str, str], aws_url: str) -> DynamoDBLedger:
    return DynamoDBLedger(local_client("dynamodb", aws_url), environment[names.ENV_LEDGER_TABLE])


def message(body: str, message_id: str = "m-1") -> dict[str, Any]:
    """A message as ReceiveMessage returns it."""
    return {"MessageId": message_id, "ReceiptHandle": f"receipt-{message_id}", "Body": body}


def sample_event(*extra: dict[str, Any]) -> dict[str, Any]:
    """The SQS event Lambda hands the function: the sample's EventBridge event as a body."""
    return sqs_event([message(SAMPLE.read_text()), *extra], QUEUE_ARN, "us-east-1")


def denial_counts(ledger: DynamoDBLedger) -> list[Totals]:
    return [
        ledger.rollup(rollup)
        for rollup in (
            Rollup("search", "2026-11"),
            Rollup("search", "2026-11", "app", "ranker"),
            Rollup("search", "2026-11", "rule", "search-monthly"),
            Rollup("search", "2026-11-29"),
            Rollup("search", "2026-11-29", "rule", "search-monthly"),
        )
    ]


def test_a_denial_becomes_one_entry_denied_by_its_rule_counted_in_its_rollups(
    handler: Handler, ledger: DynamoDBLedger
) -> None:
    assert handler(sample_event(), CONTEXT) == {"batchItemFailures": []}

    (entry,) = ledger.calls("search", "2026-11")
    assert (entry.request_id, entry.decision, entry.cost, entry.reserved) == (
        SAMPLE_REQUEST,
        "denied by rule search-monthly",
        0,
        0,
    )
    assert entry.denial is not None
    assert (entry.denial.code, entry.denial.requested, entry.denial.remaining) == ("insufficient_quota", 3450, 1800)
    assert ledger.request(SAMPLE_REQUEST) == [entry]
    assert denial_counts(ledger) == [Totals(denials=1)] * 5


def test_a_message_delivered_again_writes_nothing_twice(handler: Handler, ledger: DynamoDBLedger) -> None:
    handler(sample_event(), CONTEXT)
    once = (list(ledger.calls("search", "2026-11")), denial_counts(ledger))

    assert handler(sample_event(), CONTEXT) == {"batchItemFailures": []}

    assert (list(ledger.calls("search", "2026-11")), denial_counts(ledger)) == once


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"source": "paymaster", "detail-type": "CostRecorded", "detail": {}}),
        json.dumps({"source": "paymaster", "detail-type": "RequestDenied", "detail": {"request_id": "r"}}),
    ],
    ids=["not-json", "another-event", "not-a-request-denied"],
)
def test_a_message_that_is_no_request_denied_fails_alone_while_the_others_land(
    handler: Handler, ledger: DynamoDBLedger, body: str
) -> None:
    assert handler(sample_event(message(body, "broken")), CONTEXT) == {
        "batchItemFailures": [{"itemIdentifier": "broken"}]
    }
    assert [entry.request_id for entry in ledger.calls("search", "2026-11")] == [SAMPLE_REQUEST]


def test_while_the_ledger_is_unavailable_the_invocation_fails_so_the_batch_comes_back(
    environment: dict[str, str], handler: Handler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")

    with pytest.raises(BatchProcessingError, match="All records failed"):
        handler(sample_event(), CONTEXT)


def test_the_runner_feeds_the_function_the_denials_the_gateway_publishes_and_only_those(
    environment: dict[str, str], handler: Handler, ledger: DynamoDBLedger, aws_url: str
) -> None:
    """The gateway's own publisher puts a RequestDenied on the local bus; the stack's rule routes
    it (and no other event) to the denials queue, which the runner hands to the function."""
    detail = json.loads(SAMPLE.read_text())["detail"]
    denied = RequestDenied.model_validate(detail | {"request_id": "live-1", "time": datetime.now(UTC).isoformat()})
    publisher = build_event_publisher(
        environment[names.ENV_EVENT_BUS], "us-east-1", timeout=httpx.Timeout(5.0), max_attempts=1, entry_attempts=1
    )
    sqs = local_client("sqs", aws_url)
    queue_url = environment[names.ENV_DENIALS_QUEUE_URL]

    assert publisher.publish([denied]) == []
    consumer = QueueConsumer(sqs, queue_url, handler, "ledger-denials", "us-east-1")
    assert consumer.poll_once(wait_s=0) == 1
    assert consumer.poll_once(wait_s=0) == 0  # deleted once recorded

    (entry,) = ledger.calls("search", denied.time.strftime("%Y-%m"))
    assert (entry.request_id, entry.decision) == ("live-1", "denied by rule search-monthly")
