"""`paymaster ledger replay` through the local stack's pieces: a settlement whose entry could not
be recorded, set aside on the failure queue by the local runner's StreamConsumer as Lambda's
event source would, then replayed from the stream once the ledger takes writes again."""

import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from paymaster import names
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.memory import MemorySettlementQueue
from paymaster.adapters.tokenizer import count_tokens
from paymaster.cli import main
from paymaster.composition import ledger_recorder, threshold_watch
from paymaster.domain.chat import ChatRequest, Usage
from paymaster.domain.errors import StoreUnavailableError
from paymaster.domain.identity import Caller
from paymaster.domain.ledger import LedgerEntry, Rollup, Totals
from paymaster.domain.metering import Reported
from paymaster.ledger_replay import BatchPlace, Invoke, RangeGoneError, invoke_function, read_range, replay_failures
from paymaster.ports import CallRecord
from paymaster.services.admission import AdmissionService
from paymaster_local.functions import LambdaContext, load_handler
from paymaster_local.runner import StreamConsumer
from tests.local_aws import local_client
from tests.policies import DEMO, policy_with

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
CONTEXT_NAME = "ledger"


@pytest.fixture
def environment(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The ledger function's environment (its table, the bus, the policy) on the session's moto."""
    monkeypatch.setenv(names.ENV_LEDGER_TABLE, aws[names.ENV_LEDGER_TABLE])
    monkeypatch.setenv(names.ENV_EVENT_BUS, aws[names.ENV_EVENT_BUS])
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
def invoke(handler: Handler) -> Invoke:
    return lambda event: handler(event, LambdaContext(CONTEXT_NAME, "replay"))


@pytest.fixture
def ledger(environment: dict[str, str], aws_url: str) -> DynamoDBLedger:
    return DynamoDBLedger(local_client("dynamodb", aws_url), environment[names.ENV_LEDGER_TABLE])


@contextmanager
def ledger_down(handler: Handler) -> Iterator[None]:
    """While inside, the ledger function's recorder finds the ledger table not answering."""
    real = handler.__globals__["ledger_recorder"]
    handler.__globals__["ledger_recorder"] = UnavailableLedger
    try:
        yield
    finally:
        handler.__globals__["ledger_recorder"] = real


class UnavailableLedger:
    """The ledger function's recorder while the ledger table does not answer."""

    def record(self, entry: LedgerEntry, written_at: datetime | None) -> None:
        raise StoreUnavailableError("the ledger is not answering")

    def publish(self, pending: list[Any]) -> list[str]:
        return []


def settle_one_call(environment: dict[str, str], aws_url: str, wire_to: Callable[[str], DynamoDBWire]) -> None:
    """One call of team search, admitted and settled through the real counter store: $0.000007."""
    policy = policy_with([{"name": "budget", "when": {"team": "search"}, "limit": 1, "unit": "cost_per_month"}])
    store = DynamoDBCounterStore(wire_to(aws_url), environment[names.ENV_COUNTERS_TABLE])
    gateway = AdmissionService(policy, store, count_tokens, lambda: datetime.now(UTC), MemorySettlementQueue())
    caller = Caller(team="search", app="ranker", env="prod", principal="search-ranker", arn="arn:aws:iam::1:role/r")
    request = ChatRequest.model_validate(
        {"model": "fixed-cost", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    )
    call = CallRecord("openai/fixed-cost", ("openai/fixed-cost",), "chatcmpl-1", 30, None)
    gateway.settle(gateway.admit(caller, request, "r-set-aside"), Reported(Usage(5, 7)), call)


def set_aside_while_the_ledger_is_down(environment: dict[str, str], aws_url: str, handler: Handler) -> str:
    """Runs the local runner's StreamConsumer over the whole stream while every entry fails, with
    one retry: the settlement's record is put on the real failure queue, the rest is done."""
    sqs = local_client("sqs", aws_url)
    failures = environment[names.ENV_LEDGER_FAILURE_QUEUE_URL]
    stream_arn = local_client("dynamodb", aws_url).describe_table(TableName=environment[names.ENV_COUNTERS_TABLE])[
        "Table"
    ]["LatestStreamArn"]
    consumer = StreamConsumer(
        local_client("dynamodbstreams", aws_url),
        stream_arn,
        handler,
        CONTEXT_NAME,
        set_aside=lambda record: sqs.send_message(QueueUrl=failures, MessageBody=json.dumps(record)),
        retry_attempts=1,
    )
    with ledger_down(handler):
        for _ in range(10):
            consumer.poll_once()
    return failures


def messages_on(queue_url: str, aws_url: str) -> list[dict[str, Any]]:
    answer = local_client("sqs", aws_url).receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0
    )
    messages: list[dict[str, Any]] = answer.get("Messages", [])
    return messages


def cost_recorded(environment: dict[str, str], aws_url: str, request_id: str) -> int:
    """How many CostRecorded for `request_id` the bus delivered to the events queue (drained)."""
    sqs = local_client("sqs", aws_url)
    count = 0
    while True:
        answer = sqs.receive_message(
            QueueUrl=environment[names.ENV_EVENTS_QUEUE_URL], MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        messages = answer.get("Messages", [])
        if not messages:
            return count
        for message in messages:
            body = json.loads(message["Body"])
            count += body["detail-type"] == names.COST_RECORDED and body["detail"]["request_id"] == request_id
            sqs.delete_message(QueueUrl=environment[names.ENV_EVENTS_QUEUE_URL], ReceiptHandle=message["ReceiptHandle"])


def replay(environment: dict[str, str], aws_url: str, invoke: Invoke, *, dry_run: bool = False) -> tuple[int, str]:
    out = io.StringIO()
    code = replay_failures(
        local_client("sqs", aws_url),
        local_client("dynamodbstreams", aws_url),
        DynamoDBLedger(local_client("dynamodb", aws_url), environment[names.ENV_LEDGER_TABLE]),
        environment[names.ENV_LEDGER_FAILURE_QUEUE_URL],
        invoke,
        dry_run=dry_run,
        out=out,
    )
    return code, out.getvalue()


def test_a_set_aside_settlement_replayed_once_the_ledger_answers_is_recorded_once_with_its_event(
    environment: dict[str, str],
    aws_url: str,
    handler: Handler,
    invoke: Invoke,
    ledger: DynamoDBLedger,
    wire_to: Any,
) -> None:
    settle_one_call(environment, aws_url, wire_to)
    failures = set_aside_while_the_ledger_is_down(environment, aws_url, handler)
    month = datetime.now(UTC).strftime("%Y-%m")
    (message,) = messages_on(failures, aws_url)
    place = BatchPlace.from_message(message["Body"])
    before = (list(ledger.calls("search", month)), cost_recorded(environment, aws_url, "r-set-aside"))

    code, printed = replay(environment, aws_url, invoke)

    assert before == ([], 0)
    assert code == 0
    assert printed.splitlines() == [
        f"{place}  1 records  1 entry: 1 recorded, 0 already there, 0 failing  deleted",
        "1 messages, 1 deleted, 0 kept",
    ]
    assert [entry.request_id for entry in ledger.calls("search", month)] == ["r-set-aside"]
    assert ledger.rollup(Rollup("search", month)) == Totals(calls=1, cost=7, input_tokens=5, output_tokens=7)
    assert cost_recorded(environment, aws_url, "r-set-aside") == 1
    assert messages_on(failures, aws_url) == []


def test_replaying_the_same_range_again_records_nothing_twice(
    environment: dict[str, str],
    aws_url: str,
    handler: Handler,
    invoke: Invoke,
    ledger: DynamoDBLedger,
    wire_to: Any,
) -> None:
    settle_one_call(environment, aws_url, wire_to)
    failures = set_aside_while_the_ledger_is_down(environment, aws_url, handler)
    (message,) = messages_on(failures, aws_url)
    replay(environment, aws_url, invoke)
    month = datetime.now(UTC).strftime("%Y-%m")
    recorded = (list(ledger.calls("search", month)), ledger.rollup(Rollup("search", month)))
    local_client("sqs", aws_url).send_message(QueueUrl=failures, MessageBody=message["Body"])

    code, printed = replay(environment, aws_url, invoke)

    assert code == 0
    assert "1 entry: 0 recorded, 1 already there, 0 failing  deleted" in printed.splitlines()[0]
    assert (list(ledger.calls("search", month)), ledger.rollup(Rollup("search", month))) == recorded
    assert messages_on(failures, aws_url) == []


def test_a_range_still_failing_is_kept_for_the_next_replay(
    environment: dict[str, str],
    aws_url: str,
    handler: Handler,
    invoke: Invoke,
    ledger: DynamoDBLedger,
    wire_to: Any,
) -> None:
    settle_one_call(environment, aws_url, wire_to)
    failures = set_aside_while_the_ledger_is_down(environment, aws_url, handler)
    with ledger_down(handler):
        code, printed = replay(environment, aws_url, invoke)

    assert code == 1
    assert "1 entry: 0 recorded, 0 already there, 1 failing  kept" in printed.splitlines()[0]
    assert len(messages_on(failures, aws_url)) == 1
    assert list(ledger.calls("search", datetime.now(UTC).strftime("%Y-%m"))) == []


def test_a_dry_run_reads_the_range_and_changes_nothing(
    environment: dict[str, str],
    aws_url: str,
    handler: Handler,
    invoke: Invoke,
    ledger: DynamoDBLedger,
    wire_to: Any,
) -> None:
    settle_one_call(environment, aws_url, wire_to)
    failures = set_aside_while_the_ledger_is_down(environment, aws_url, handler)

    code, printed = replay(environment, aws_url, invoke, dry_run=True)

    assert code == 0
    assert "1 records  1 entry: 1 to record, 0 already there (dry run)  kept" in printed.splitlines()[0]
    assert list(ledger.calls("search", datetime.now(UTC).strftime("%Y-%m"))) == []
    assert cost_recorded(environment, aws_url, "r-set-aside") == 0
    assert len(messages_on(failures, aws_url)) == 1


def test_a_range_the_stream_no_longer_holds_is_reported_with_the_rebuild_and_kept(
    environment: dict[str, str], aws_url: str, handler: Handler, invoke: Invoke, wire_to: Any
) -> None:
    settle_one_call(environment, aws_url, wire_to)
    failures = set_aside_while_the_ledger_is_down(environment, aws_url, handler)
    (message,) = messages_on(failures, aws_url)
    gone = json.loads(message["Body"])
    # moto never trims its stream: a range past its last record is one it does not hold.
    past = str(int(gone["DDBStreamBatchInfo"]["endSequenceNumber"]) + 10**6)
    gone["DDBStreamBatchInfo"].update(startSequenceNumber=past, endSequenceNumber=past)
    sqs = local_client("sqs", aws_url)
    sqs.delete_message(QueueUrl=failures, ReceiptHandle=message["ReceiptHandle"])
    sqs.send_message(QueueUrl=failures, MessageBody=json.dumps(gone))

    code, printed = replay(environment, aws_url, invoke)

    assert code == 1
    first = printed.splitlines()[0]
    assert "gone from the stream" in first
    assert "rebuild its entries from the reservation items" in first
    assert first.endswith("kept")
    assert len(messages_on(failures, aws_url)) == 1


class RefusingStream:
    """A dynamodbstreams client answering GetShardIterator as DynamoDB Streams does for a range
    older than its 24 hours (TrimmedDataAccessException) or a shard or stream it no longer has."""

    def __init__(self, code: str) -> None:
        self.code = code

    def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": self.code, "Message": "gone"}}, "GetShardIterator")


@pytest.mark.parametrize("code", ["TrimmedDataAccessException", "ResourceNotFoundException"])
def test_a_trimmed_range_or_a_shard_gone_is_a_range_gone(code: str) -> None:
    place = BatchPlace("shardId-1", "100", "100", "arn:aws:dynamodb:us-east-1:1:table/t/stream/s")

    with pytest.raises(RangeGoneError) as gone:
        read_range(RefusingStream(code), place)

    assert gone.value.reason == code


def test_any_other_stream_error_is_raised_not_taken_for_a_range_gone() -> None:
    place = BatchPlace("shardId-1", "100", "100", "arn:aws:dynamodb:us-east-1:1:table/t/stream/s")

    with pytest.raises(ClientError):
        read_range(RefusingStream("AccessDeniedException"), place)


def test_the_command_replays_in_this_process_with_the_local_stacks_environment(
    environment: dict[str, str],
    aws_url: str,
    handler: Handler,
    ledger: DynamoDBLedger,
    wire_to: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settle_one_call(environment, aws_url, wire_to)
    failures = set_aside_while_the_ledger_is_down(environment, aws_url, handler)
    monkeypatch.setenv(names.ENV_LEDGER_FAILURE_QUEUE_URL, failures)

    code = main(["ledger", "replay"])

    assert code == 0
    assert "1 recorded, 0 already there, 0 failing  deleted" in capsys.readouterr().out
    assert [entry.request_id for entry in ledger.calls("search", datetime.now(UTC).strftime("%Y-%m"))] == [
        "r-set-aside"
    ]


class LambdaClient:
    """A boto3 Lambda client's `invoke`, answering with `payload` (and `FunctionError` if given)."""

    def __init__(self, payload: bytes, function_error: str | None = None) -> None:
        self.payload, self.function_error = payload, function_error
        self.invoked: list[dict[str, Any]] = []

    def invoke(self, FunctionName: str, Payload: bytes) -> dict[str, Any]:
        self.invoked.append({"function": FunctionName, "event": json.loads(Payload)})
        answer: dict[str, Any] = {"StatusCode": 200, "Payload": io.BytesIO(self.payload)}
        if self.function_error:
            answer["FunctionError"] = self.function_error
        return answer


def test_the_deployed_function_is_invoked_with_the_event_and_its_failures_read() -> None:
    client = LambdaClient(b'{"batchItemFailures": [{"itemIdentifier": "100"}]}')
    event = {"Records": [{"dynamodb": {"SequenceNumber": "100", "Keys": {"pk": {"B": b"\x01"}}}}]}

    answer = invoke_function(client, "paymaster-ledger")(event)

    assert answer == {"batchItemFailures": [{"itemIdentifier": "100"}]}
    assert client.invoked == [
        {
            "function": "paymaster-ledger",
            "event": {"Records": [{"dynamodb": {"SequenceNumber": "100", "Keys": {"pk": {"B": "AQ=="}}}}]},
        }
    ]


def test_a_deployed_function_that_failed_raises_so_its_records_count_as_failing() -> None:
    client = LambdaClient(b'{"errorMessage": "All records failed processing"}', function_error="Unhandled")

    with pytest.raises(RuntimeError, match="paymaster-ledger failed"):
        invoke_function(client, "paymaster-ledger")({"Records": []})


def test_a_message_that_is_no_stream_batch_record_is_reported_and_kept(
    environment: dict[str, str], aws_url: str, invoke: Invoke
) -> None:
    failures = environment[names.ENV_LEDGER_FAILURE_QUEUE_URL]
    local_client("sqs", aws_url).send_message(QueueUrl=failures, MessageBody='{"hello": "world"}')

    code, printed = replay(environment, aws_url, invoke)

    assert code == 1
    assert printed.splitlines() == [
        'not a DynamoDB stream batch\'s on-failure record: {"hello": "world"}  kept',
        "1 messages, 0 deleted, 1 kept",
    ]
    assert len(messages_on(failures, aws_url)) == 1
