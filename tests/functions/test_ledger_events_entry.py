"""The ledger function's events: every charged call's CostRecorded and every expired hold's
ReservationExpired, published for the whole stream batch at most 10 per PutEvents, retried, and
what still failed reported as batch item failures that a redelivery publishes — without a
second ledger entry or rollup."""

import copy
import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from paymaster import names, schema
from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.composition import ledger_recorder, threshold_watch
from paymaster.domain.events import CostRecorded, ReservationExpired
from paymaster.domain.ledger import Rollup
from paymaster.services.ledger import LedgerRecorder
from paymaster_local.runner import LambdaContext, load_handler
from tests.local_aws import local_client
from tests.policies import DEMO
from tests.publishers import ScriptedBus, scripted_publisher

EVENT = Path(__file__).resolve().parents[2] / "events" / "dynamodb" / "counters-stream.json"
CONTEXT = LambdaContext("ledger", "c0ffee")
MONTH = "2026-12"  # the sample's
FIRST_SEQUENCE = 4421584500000000017450439000
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture
def environment(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The function's environment as the CDK app sets it — its table and the bus — pointed at the
    session's moto; its composition rebuilt."""
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
def ledger(environment: dict[str, str], aws_url: str) -> DynamoDBLedger:
    return DynamoDBLedger(local_client("dynamodb", aws_url), environment[names.ENV_LEDGER_TABLE])


@pytest.fixture
def bus(handler: Handler, ledger: DynamoDBLedger, monkeypatch: pytest.MonkeyPatch) -> ScriptedBus:
    """The function's use case on the real ledger, publishing through the real EventBridge
    publisher to a scripted PutEvents."""
    scripted = ScriptedBus()
    recorder = LedgerRecorder(ledger, scripted_publisher(scripted))
    monkeypatch.setitem(handler.__globals__, "ledger_recorder", lambda: recorder)
    return scripted


def sample_records() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(EVENT.read_text())["Records"]
    return loaded


def sequence(index: int) -> str:
    return str(FIRST_SEQUENCE + index)


def settled(request_id: str, index: int, **new_image: Any) -> dict[str, Any]:
    """The sample's settled reservation as request `request_id`, the index-th record of the shard."""
    record = copy.deepcopy(sample_records()[0])
    change = record["dynamodb"]
    pk = {"S": schema.reservation_pk(request_id)}
    change["Keys"][schema.PARTITION_KEY] = change["OldImage"][schema.PARTITION_KEY] = pk
    change["NewImage"] |= {schema.PARTITION_KEY: pk, **new_image}
    change["SequenceNumber"] = sequence(index)
    return record


def counter(index: int) -> dict[str, Any]:
    record = copy.deepcopy(sample_records()[1])
    record["dynamodb"]["SequenceNumber"] = sequence(index)
    return record


def calls(count: int) -> list[dict[str, Any]]:
    """`count` settled calls `r00`, `r01`, …, each followed by its counter's record, in stream order."""
    records: list[dict[str, Any]] = []
    for number in range(count):
        records += [settled(f"r{number:02d}", len(records)), counter(len(records) + 1)]
    return records


def request_ids(entries: list[dict[str, Any]]) -> list[str]:
    return [json.loads(entry["Detail"])["request_id"] for entry in entries]


def test_a_stream_batch_s_events_go_out_at_most_10_per_put_events_across_its_records(
    handler: Handler, bus: ScriptedBus, ledger: DynamoDBLedger
) -> None:
    """25 settled calls in a batch of 50 records: 3 PutEvents (10, 10, 5), not 25."""
    assert handler({"Records": calls(25)}, CONTEXT) == {"batchItemFailures": []}

    assert [len(call) for call in bus.calls] == [10, 10, 5]
    assert {entry["DetailType"] for call in bus.calls for entry in call} == {names.COST_RECORDED}
    assert sorted(bus.accepted) == [f"r{number:02d}" for number in range(25)]
    assert ledger.rollup(Rollup("search", MONTH)).calls == 25


def test_a_put_events_partial_failure_is_retried_without_loss_or_duplicate(handler: Handler, bus: ScriptedBus) -> None:
    throttled = {"r03", "r07", "r21"}
    bus.fail = lambda entry, call: "ThrottlingException" if call == 1 and request_ids([entry])[0] in throttled else None

    assert handler({"Records": calls(25)}, CONTEXT) == {"batchItemFailures": []}

    assert sorted(request_ids(bus.calls[1])) == ["r03", "r07"]  # the first call's two, again on their own
    assert Counter(bus.accepted) == Counter(f"r{number:02d}" for number in range(25))  # each exactly once


def test_an_event_that_finally_fails_is_reported_and_its_redelivery_publishes_it_without_a_second_entry(
    handler: Handler, bus: ScriptedBus, ledger: DynamoDBLedger
) -> None:
    """Lambda resumes the shard at the failed record: it and what follows come again, find their
    entries there (nothing written or added twice) and publish their events — at least once."""
    records = calls(5)
    bus.fail = lambda entry, _: "ThrottlingException" if request_ids([entry])[0] == "r02" else None

    first = handler({"Records": records}, CONTEXT)

    assert first == {"batchItemFailures": [{"itemIdentifier": sequence(4)}]}  # r02, the 5th record
    assert sorted(bus.accepted) == ["r00", "r01", "r03", "r04"]
    entries, totals = list(ledger.calls("search", MONTH)), ledger.rollup(Rollup("search", MONTH))
    assert (len(entries), totals.calls, totals.cost) == (5, 5, 30)

    bus.fail = lambda *_: None
    assert handler({"Records": records[4:]}, CONTEXT) == {"batchItemFailures": []}

    assert (list(ledger.calls("search", MONTH)), ledger.rollup(Rollup("search", MONTH))) == (entries, totals)
    assert Counter(bus.accepted) == {"r00": 1, "r01": 1, "r02": 1, "r03": 2, "r04": 2}


def test_a_batch_delivered_twice_writes_nothing_twice_and_publishes_again(
    handler: Handler, bus: ScriptedBus, ledger: DynamoDBLedger
) -> None:
    handler({"Records": calls(3)}, CONTEXT)
    entries, totals = list(ledger.calls("search", MONTH)), ledger.rollup(Rollup("search", MONTH))

    assert handler({"Records": calls(3)}, CONTEXT) == {"batchItemFailures": []}

    assert (list(ledger.calls("search", MONTH)), ledger.rollup(Rollup("search", MONTH))) == (entries, totals)
    assert totals.calls == 3
    assert Counter(bus.accepted) == {"r00": 2, "r01": 2, "r02": 2}  # consumers de-duplicate on request id


def test_a_record_that_cannot_be_read_and_an_event_that_failed_are_reported_together_in_stream_order(
    handler: Handler, bus: ScriptedBus
) -> None:
    records = calls(3)
    del records[4]["dynamodb"]["NewImage"][schema.ADMITTED_AT]  # r02 cannot be read
    bus.fail = lambda entry, _: "AccessDeniedException" if request_ids([entry])[0] == "r00" else None

    response = handler({"Records": records}, CONTEXT)

    assert response == {"batchItemFailures": [{"itemIdentifier": sequence(0)}, {"itemIdentifier": sequence(4)}]}
    assert bus.accepted == ["r01"]


def test_a_charged_entry_whose_event_cannot_be_made_is_recorded_and_logged_not_retried(
    handler: Handler, bus: ScriptedBus, ledger: DynamoDBLedger, caplog: pytest.LogCaptureFixture
) -> None:
    """A settled reservation that names no deployment: the entry is the ledger's, and no
    redelivery could make its event, so the record is done and the log says which entry it was —
    failing it would hold the shard back until the record is set aside, for nothing."""
    records = calls(2)
    del records[2]["dynamodb"]["NewImage"][schema.DEPLOYMENT]  # r01

    assert handler({"Records": records}, CONTEXT) == {"batchItemFailures": []}

    assert bus.accepted == ["r00"]
    assert sorted(entry.request_id for entry in ledger.calls("search", MONTH)) == ["r00", "r01"]
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert [(record.getMessage(), record.__dict__["request_id"]) for record in errors] == [
        ("a ledger entry whose event cannot be made: recorded, not published", "r01")
    ]


def test_an_event_the_bus_refuses_for_what_it_is_is_logged_whole_and_its_record_is_done(
    handler: Handler, bus: ScriptedBus, ledger: DynamoDBLedger, caplog: pytest.LogCaptureFixture
) -> None:
    """MalformedDetail is refused again however often it is sent; a throttled one is worth the
    redelivery. Only the second holds its record back."""
    records = calls(3)
    codes = {"r00": "MalformedDetail", "r02": "ThrottlingException"}
    bus.fail = lambda entry, _: codes.get(request_ids([entry])[0])

    assert handler({"Records": records}, CONTEXT) == {"batchItemFailures": [{"itemIdentifier": sequence(4)}]}

    assert bus.accepted == ["r01"]
    refused = [record.__dict__ for record in caplog.records if record.getMessage().startswith("ledger event refused")]
    assert [(line["key"], line["code"], line["detail"]["request_id"]) for line in refused] == [
        ("r00", "MalformedDetail", "r00")
    ]


def test_a_release_publishes_nothing_and_a_swept_hold_its_reservation_expired_at_the_record_s_time(
    handler: Handler, bus: ScriptedBus, ledger: DynamoDBLedger
) -> None:
    swept_at = datetime(2026, 12, 3, 10, 40, 5, tzinfo=UTC)
    released = settled("refused", 0, state={"S": "released"}, cost={"N": "0"}, billed_on={"S": "released"})
    del released["dynamodb"]["NewImage"][schema.USAGE]
    expired = settled("crashed", 1, state={"S": "expired"}, cost={"N": "41"}, billed_on={"S": "reservation"})
    new_image = expired["dynamodb"]["NewImage"]
    for name in (schema.USAGE, schema.DEPLOYMENT, schema.TRIED, schema.PROVIDER_REQUEST_ID, schema.LATENCY_MS):
        del new_image[name]
    new_image[schema.FLAGS] = {"L": [{"S": "expired_unsettled"}]}
    expired["dynamodb"]["ApproximateCreationDateTime"] = int(swept_at.timestamp())

    assert handler({"Records": [released, expired]}, CONTEXT) == {"batchItemFailures": []}

    ((entry,),) = bus.calls
    assert entry["DetailType"] == names.RESERVATION_EXPIRED
    event = ReservationExpired.model_validate_json(entry["Detail"])
    assert (event.request_id, event.cost_usd_micros, event.flags) == ("crashed", 41, ("expired_unsettled",))
    assert (event.time, event.held_until) == (swept_at, datetime(2026, 12, 3, 10, 35, 42, tzinfo=UTC))
    assert {entry.outcome for entry in ledger.calls("search", MONTH)} == {"released", "expired"}


def test_the_function_publishes_on_the_bus_its_environment_names(
    environment: dict[str, str], handler: Handler, aws_url: str
) -> None:
    """No scripted bus: the composition's publisher, to the stand-in's bus, whose rule delivers
    every paymaster event to the queue `paymaster events tail` reads."""
    handler({"Records": sample_records()}, CONTEXT)

    sqs = boto3.client(
        "sqs", endpoint_url=aws_url, region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
    )
    answer = sqs.receive_message(QueueUrl=environment[names.ENV_EVENTS_QUEUE_URL], WaitTimeSeconds=2)
    (message,) = answer["Messages"]
    body = json.loads(message["Body"])
    assert (body["source"], body["detail-type"]) == (names.EVENT_SOURCE, names.COST_RECORDED)
    event = CostRecorded.model_validate(body["detail"])
    assert (event.request_id, event.team, event.cost_usd_micros) == (
        "6f1c2e0a-8d4b-4f3e-9a51-2b7c9d0e1f23",
        "search",
        6,
    )
