"""Which counters-stream records are ledger entries, read as the counter store writes them; and
the local runner's stream consumer retrying, never skipping, what the handler reports failed."""

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from paymaster import schema
from paymaster.adapters.dynamodb_ledger import ledger_entry
from paymaster.adapters.dynamodb_records import entry_attributes, recorded_entry
from paymaster.domain.chat import Usage
from paymaster_local.runner import StreamConsumer

EVENT = Path(__file__).resolve().parents[2] / "events" / "dynamodb" / "counters-stream.json"


def records() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(EVENT.read_text())["Records"]
    return loaded


def settled() -> dict[str, Any]:
    return copy.deepcopy(records()[0])


def test_a_reservation_leaving_held_is_an_entry_named_by_its_request_and_hop() -> None:
    fallback = settled()
    fallback["dynamodb"]["Keys"][schema.PARTITION_KEY] = {"S": schema.reservation_pk("r9~1")}

    entry = ledger_entry(fallback)

    assert entry is not None
    assert (entry.request_id, entry.hop, entry.outcome, entry.team) == ("r9", 1, "settled", "search")


def test_a_counter_record_is_no_entry() -> None:
    assert ledger_entry(records()[1]) is None


def test_an_admission_and_a_ttl_deletion_are_no_entries() -> None:
    admission = settled()
    admission["eventName"] = "INSERT"
    admission["dynamodb"]["NewImage"] = admission["dynamodb"].pop("OldImage")
    deletion = settled()
    deletion["eventName"] = "REMOVE"
    del deletion["dynamodb"]["NewImage"]

    assert ledger_entry(admission) is None
    assert ledger_entry(deletion) is None


def test_a_fence_is_no_entry_nothing_was_held_or_served_under_it() -> None:
    """A released reservation put where no admission committed: an INSERT, already final."""
    fence = settled()
    fence["eventName"] = "INSERT"
    del fence["dynamodb"]["OldImage"]
    fence["dynamodb"]["NewImage"] = {
        schema.PARTITION_KEY: {"S": schema.reservation_pk("r1")},
        schema.SORT_KEY: {"S": schema.RESERVATION_SORT_KEY},
        schema.STATE: {"S": "released"},
        schema.HOLDS: {"L": []},
        schema.COST: {"N": "0"},
        schema.FLAGS: {"L": [{"S": "admission_outcome_unknown"}, {"S": schema.FENCED}]},
    }

    assert ledger_entry(fence) is None


def test_a_stream_without_old_images_is_an_error_not_silence() -> None:
    keys_only = settled()
    del keys_only["dynamodb"]["OldImage"], keys_only["dynamodb"]["NewImage"]

    with pytest.raises(ValueError, match="NEW_AND_OLD_IMAGES"):
        ledger_entry(keys_only)


def test_the_entry_is_written_with_the_reservations_own_encoding_and_read_back_whole() -> None:
    entry = ledger_entry(settled())
    assert entry is not None
    no_call = {"latency_ms": None, "deployment": None, "tried": (), "provider_request_id": None}
    expired = replace(entry, outcome="expired", usage=None, user=None, **no_call)

    cut = replace(
        entry, outcome="charged_delivered", usage=None, charged_usage=Usage(21, 9), billed_on="delivered_text"
    )
    assert entry.held_until == datetime(2026, 12, 3, 10, 35, 42, tzinfo=UTC)  # admitted + 20 minutes
    for original in (entry, expired, cut, replace(entry, usage=Usage(1, 2, 3, 4), first_token_ms=90)):
        item = entry_attributes(original)
        assert recorded_entry(item, request_id=original.request_id, hop=0, outcome=original.outcome) == original
    new_image = settled()["dynamodb"]["NewImage"]
    assert {name: new_image[name] for name in entry_attributes(entry)} == entry_attributes(entry)


class FakeStream:
    """One shard of `count` records, read as DynamoDB Streams reads: iterators, limits, sequence numbers."""

    def __init__(self, count: int) -> None:
        self.records = [
            {"eventName": "MODIFY", "dynamodb": {"SequenceNumber": str(100 + index), "Keys": {}}}
            for index in range(count)
        ]

    def describe_stream(self, StreamArn: str) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": "shard-1"}]}}

    def get_shard_iterator(self, StreamArn: str, ShardId: str, ShardIteratorType: str, **where: str) -> dict[str, Any]:
        start = {"TRIM_HORIZON": 0, "AT_SEQUENCE_NUMBER": 0, "AFTER_SEQUENCE_NUMBER": 1}[ShardIteratorType]
        if "SequenceNumber" in where:
            start += int(where["SequenceNumber"]) - 100
        return {"ShardIterator": str(start)}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        start = int(ShardIterator)
        batch = self.records[start : start + Limit]
        return {"Records": batch, "NextShardIterator": str(start + len(batch))}


def test_the_consumer_retries_from_the_first_failed_record_then_sets_it_aside_and_moves_on() -> None:
    stream = FakeStream(5)
    delivered: list[list[str]] = []
    set_aside: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], _: Any) -> dict[str, Any]:
        batch = [record["dynamodb"]["SequenceNumber"] for record in event["Records"]]
        delivered.append(batch)
        assert all(record["eventSourceARN"] == "arn:stream" for record in event["Records"])
        return {"batchItemFailures": [{"itemIdentifier": "102"}] if "102" in batch else []}

    consumer = StreamConsumer(stream, "arn:stream", handler, "ledger", set_aside=set_aside.append, retry_attempts=2)

    handled = [consumer.poll_once() for _ in range(5)]

    # 100 and 101 done; 102 failed, handed over again twice (with what follows it), then set aside.
    assert delivered == [["100", "101", "102", "103", "104"]] + [["102", "103", "104"]] * 2 + [["103", "104"]]
    assert handled == [2, 0, 0, 2, 0]
    (aside,) = set_aside
    assert aside["DDBStreamBatchInfo"] | {"shardId": "-"} == {
        "shardId": "-",
        "startSequenceNumber": "102",
        "endSequenceNumber": "102",
        "batchSize": 1,
        "streamArn": "arn:stream",
    }
    assert aside["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert aside["requestContext"]["approximateInvokeCount"] == 3


def test_a_handler_that_raises_gets_the_whole_batch_again() -> None:
    stream = FakeStream(3)
    calls: list[int] = []

    def handler(event: dict[str, Any], _: Any) -> dict[str, Any]:
        calls.append(len(event["Records"]))
        if len(calls) == 1:
            raise RuntimeError("cold start failed")
        return {"batchItemFailures": []}

    consumer = StreamConsumer(stream, "arn:stream", handler, "ledger", set_aside=lambda _: None)

    assert [consumer.poll_once(), consumer.poll_once(), consumer.poll_once()] == [0, 3, 0]
    assert calls == [3, 3]
