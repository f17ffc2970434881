"""The ledger function as Lambda runs it — fed the DynamoDB Streams event sample, and fed by the
local runner from the counters table's real stream as the counter store writes it."""

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from paymaster import names, schema
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.memory import MemorySettlementQueue
from paymaster.adapters.tokenizer import count_tokens
from paymaster.composition import ledger_recorder, threshold_watch
from paymaster.domain.chat import ChatRequest, Usage
from paymaster.domain.identity import Caller
from paymaster.domain.ledger import LedgerEntry, Rollup, Totals, rollups
from paymaster.domain.metering import NotAccepted, Reported
from paymaster.ports import CallRecord
from paymaster.services.admission import AdmissionService
from paymaster_local.runner import LambdaContext, StreamConsumer, load_handler
from tests.local_aws import local_client
from tests.policies import DEMO, policy_with

EVENT = Path(__file__).resolve().parents[2] / "events" / "dynamodb" / "counters-stream.json"
CONTEXT = LambdaContext("ledger", "c0ffee")
SAMPLE_REQUEST = "6f1c2e0a-8d4b-4f3e-9a51-2b7c9d0e1f23"
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture
def environment(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The function's environment, pointed at the session's moto; its composition rebuilt."""
    monkeypatch.setenv(names.ENV_LEDGER_TABLE, aws[names.ENV_LEDGER_TABLE])
    monkeypatch.setenv(names.ENV_POLICY_FILE, str(DEMO))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    ledger_recorder.cache_clear()
    threshold_watch.cache_clear()
    yield aws
    ledger_recorder.cache_clear()
    threshold_watch.cache_clear()


@pytest.fixture
def handler() -> Handler:
    return load_handler("ledger")


@pytest.fixture
def dynamodb(aws_url: str) -> Any:
    return local_client("dynamodb", aws_url)


@pytest.fixture
def ledger(environment: dict[str, str], dynamodb: Any) -> DynamoDBLedger:
    return DynamoDBLedger(dynamodb, environment[names.ENV_LEDGER_TABLE])


def sample() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(EVENT.read_text())
    return loaded


def every_rollup(ledger: DynamoDBLedger, entry: LedgerEntry) -> list[Totals]:
    return [ledger.rollup(rollup) for rollup in rollups(entry)]


def test_the_sample_is_a_settled_reservation_and_a_counter(handler: Handler) -> None:
    settled, counter = sample()["Records"]

    assert (settled["eventName"], settled["dynamodb"]["OldImage"][schema.STATE]["S"]) == ("MODIFY", schema.HELD)
    assert settled["dynamodb"]["NewImage"][schema.STATE]["S"] == "settled"
    assert counter["dynamodb"]["Keys"][schema.PARTITION_KEY]["S"].startswith("RULE#")


def test_a_settled_reservation_becomes_one_entry_and_the_counter_record_is_only_read(
    handler: Handler, ledger: DynamoDBLedger
) -> None:
    assert handler(sample(), CONTEXT) == {"batchItemFailures": []}

    (entry,) = ledger.calls("search", "2026-12")
    assert (entry.request_id, entry.hop, entry.outcome) == (SAMPLE_REQUEST, 0, "settled")
    assert (entry.cost, entry.reserved, entry.billed_on) == (6, 41, "provider_usage")
    assert entry.admitted_at == datetime(2026, 12, 3, 10, 15, 42, 123_000, tzinfo=UTC)
    assert (entry.app, entry.user, entry.metadata) == ("ranker", "u-7", (("feature", "query-rewrite"),))
    assert entry.usage == Usage(21, 4)
    assert (entry.deployment, entry.provider_request_id, entry.latency_ms) == (
        "openai/gpt-4o-mini",
        "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        412,
    )
    assert ledger.request(SAMPLE_REQUEST) == [entry]
    assert ledger.rollup(Rollup("search", "2026-12", "model", "gpt-4o-mini")) == Totals(1, 6, 21, 4)


def test_a_batch_delivered_twice_records_nothing_twice(handler: Handler, ledger: DynamoDBLedger) -> None:
    handler(sample(), CONTEXT)
    (entry,) = ledger.calls("search", "2026-12")
    once = every_rollup(ledger, entry)

    assert handler(sample(), CONTEXT) == {"batchItemFailures": []}

    assert list(ledger.calls("search", "2026-12")) == [entry]
    assert every_rollup(ledger, entry) == once == [Totals(1, 6, 21, 4)] * 6


def test_a_record_that_cannot_be_read_is_a_batch_item_failure_while_the_others_land(
    handler: Handler, ledger: DynamoDBLedger
) -> None:
    event = sample()
    broken = copy.deepcopy(event["Records"][0])
    broken["dynamodb"]["Keys"][schema.PARTITION_KEY] = {"S": schema.reservation_pk("broken")}
    del broken["dynamodb"]["NewImage"][schema.ADMITTED_AT]
    broken["dynamodb"]["SequenceNumber"] = "4421584500000000017450439090"
    event["Records"].insert(0, broken)

    assert handler(event, CONTEXT) == {"batchItemFailures": [{"itemIdentifier": "4421584500000000017450439090"}]}
    assert [entry.request_id for entry in ledger.calls("search", "2026-12")] == [SAMPLE_REQUEST]


def test_while_the_ledger_is_unavailable_the_invocation_fails_so_the_batch_comes_back(
    environment: dict[str, str], handler: Handler, monkeypatch: pytest.MonkeyPatch
) -> None:
    (settled, _) = sample()["Records"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")

    with pytest.raises(BatchProcessingError, match="All records failed"):
        handler({"Records": [settled]}, CONTEXT)


def test_the_runner_feeds_the_function_what_the_counter_store_writes_and_a_replay_counts_nothing_twice(
    environment: dict[str, str],
    handler: Handler,
    ledger: DynamoDBLedger,
    aws_url: str,
    dynamodb: Any,
    wire_to: Callable[[str], DynamoDBWire],
) -> None:
    """Admission and settlement through the real counter store; their records read off moto's
    stream by the local runner and handed to the function. Then the whole stream once more,
    from its start, as a redelivery would: the ledger stays as it was."""
    policy = policy_with([{"name": "budget", "when": {"team": "search"}, "limit": 1, "unit": "cost_per_month"}])
    store = DynamoDBCounterStore(wire_to(aws_url), environment[names.ENV_COUNTERS_TABLE])
    gateway = AdmissionService(policy, store, count_tokens, lambda: datetime.now(UTC), MemorySettlementQueue())
    caller = Caller(team="search", app="ranker", env="prod", principal="search-ranker", arn="arn:aws:iam::1:role/r")
    request = ChatRequest.model_validate(
        {"model": "fixed-cost", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    )
    call = CallRecord("openai/fixed-cost", ("openai/fixed-cost",), "chatcmpl-1", 30, None)
    for number in range(3):
        gateway.settle(gateway.admit(caller, request, f"r{number}"), Reported(Usage(5, 7)), call)
    gateway.settle(gateway.admit(caller, request, "refused-by-provider"), NotAccepted(), call)
    stream_arn = dynamodb.describe_table(TableName=environment[names.ENV_COUNTERS_TABLE])["Table"]["LatestStreamArn"]
    streams = local_client("dynamodbstreams", aws_url)
    set_aside: list[dict[str, Any]] = []

    def consumer() -> StreamConsumer:
        return StreamConsumer(streams, stream_arn, handler, "ledger", set_aside=set_aside.append)

    first = consumer()
    while first.poll_once():
        pass
    month = datetime.now(UTC).strftime("%Y-%m")
    recorded = list(ledger.calls("search", month))
    total = ledger.rollup(Rollup("search", month))

    replay = consumer()
    while replay.poll_once():
        pass

    assert sorted(entry.request_id for entry in recorded) == ["r0", "r1", "r2", "refused-by-provider"]
    assert {entry.request_id: entry.outcome for entry in recorded}["refused-by-provider"] == "released"
    assert total == Totals(calls=4, cost=21, input_tokens=15, output_tokens=21)
    assert (list(ledger.calls("search", month)), ledger.rollup(Rollup("search", month))) == (recorded, total)
    assert set_aside == []
