"""`paymaster ledger replay`: what the ledger function's event source set aside, handed to the
ledger function again (docs/LEDGER.md, "Failures: reported, retried, never dropped").

Each message on the ledger failure queue is Lambda's on-failure record for a batch of the
counters' stream that failed every retry: its place (`DDBStreamBatchInfo`: shard, first and last
sequence number, stream), not its records. For each message:

    GetShardIterator AT_SEQUENCE_NUMBER <start>  →  GetRecords … until past <end>
    → the records as a DynamoDB Streams event → the ledger function's handler
    → no batch item failure: the message is deleted; any: it is kept for the next replay

and one line says what happened:

    shardId-0001 49620000…0001..49620000…0003  3 records  1 entry recorded, 0 already there, 0 failing  deleted
    shardId-0001 49620000…0007..49620000…0007  gone from the stream (TrimmedDataAccessException): …  kept

The ledger's writes are conditional on the entry not being there, so replaying a range twice
records nothing twice (its events are published again: consumers de-duplicate on request id).
A range the stream no longer holds (24 hours; or the shard gone) is reported and kept: its
entries are rebuilt from the reservation items, which stay 30 days in the counters table.
`dry_run` reads and prints, and changes nothing.
"""

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from botocore.exceptions import ClientError

from paymaster.adapters.dynamodb_ledger import DynamoDBLedger, ledger_entry

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
"""Hands a DynamoDB Streams event to the ledger function; its answer (`batchItemFailures`).
Raises when the invocation failed (every record of it failing)."""

# Long enough that no message of a run is received twice in it; one the run keeps is made visible
# again at its end (and after this long if the run is killed).
RUN_VISIBILITY_S = 900
# An open shard can answer a page with no records before the ones asked for: read a few more.
EMPTY_PAGES = 5
GONE_ERRORS = frozenset({"TrimmedDataAccessException", "ResourceNotFoundException"})
REBUILD = (
    "rebuild its entries from the reservation items instead (they stay 30 days in the counters table; docs/LEDGER.md)"
)


def stream_event(records: list[dict[str, Any]], stream_arn: str) -> dict[str, Any]:
    """GetRecords' records as the DynamoDB Streams event Lambda gives a function: the same
    record with `eventSourceARN`, and its creation time in epoch seconds."""
    event_records = []
    for record in records:
        change = dict(record["dynamodb"])
        created = change.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            change["ApproximateCreationDateTime"] = int(created.timestamp())
        event_records.append({**record, "dynamodb": change, "eventSourceARN": stream_arn})
    return {"Records": event_records}


@dataclass(frozen=True)
class BatchPlace:
    """Where a set-aside batch is in the stream: `DDBStreamBatchInfo` of Lambda's record."""

    shard_id: str
    start: str
    end: str
    stream_arn: str

    @classmethod
    def from_message(cls, body: str) -> "BatchPlace":
        """Raises ValueError for a message that is not a stream batch's on-failure record."""
        try:
            info = json.loads(body)["DDBStreamBatchInfo"]
            return cls(
                str(info["shardId"]),
                str(info["startSequenceNumber"]),
                str(info["endSequenceNumber"]),
                str(info["streamArn"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError("not a DynamoDB stream batch's on-failure record") from error

    def __str__(self) -> str:
        return f"{self.shard_id} {self.start}..{self.end}"


class RangeGoneError(Exception):
    """The stream no longer holds the range: older than its 24 hours, or its shard is gone."""

    def __init__(self, place: BatchPlace, reason: str) -> None:
        super().__init__(f"{place}: {reason}")
        self.reason = reason


def read_range(streams: Any, place: BatchPlace) -> list[dict[str, Any]]:
    """The records of `place`, in order, from a boto3 `dynamodbstreams` client.

    Raises RangeGoneError when the stream answers that it no longer has them, or has none of them.
    """
    end = int(place.end)
    records: list[dict[str, Any]] = []
    try:
        iterator: str | None = streams.get_shard_iterator(
            StreamArn=place.stream_arn,
            ShardId=place.shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=place.start,
        )["ShardIterator"]
        empty = 0
        while iterator is not None and empty < EMPTY_PAGES:
            answer = streams.get_records(ShardIterator=iterator)
            iterator = answer.get("NextShardIterator")
            page = answer["Records"]
            empty = 0 if page else empty + 1
            records += [record for record in page if int(record["dynamodb"]["SequenceNumber"]) <= end]
            if any(int(record["dynamodb"]["SequenceNumber"]) >= end for record in page):
                break
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in GONE_ERRORS:
            raise RangeGoneError(place, code) from error
        raise
    if not records:
        raise RangeGoneError(place, "no record of the range is in the stream")
    return records


@dataclass(frozen=True)
class Replayed:
    """What one message's range came to. `failing`: the records still reported failed."""

    records: int
    entries: int
    already: int
    recorded: int
    unreadable: int
    failing: int

    @property
    def done(self) -> bool:
        return self.failing == 0


def invoke_function(lambda_client: Any, function: str) -> Invoke:
    """Invokes the deployed ledger function (RequestResponse) with an event; raises when it
    failed (`FunctionError`: BatchProcessor fails the invocation when every record failed)."""

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        answer = lambda_client.invoke(FunctionName=function, Payload=json.dumps(event, default=_wire_bytes).encode())
        payload = answer["Payload"].read()
        if answer.get("FunctionError"):
            raise RuntimeError(f"{function} failed: {payload[:500]!r}")
        result: dict[str, Any] = json.loads(payload)
        return result

    return invoke


def _wire_bytes(value: object) -> str:
    """A binary attribute as the event carries it: base64."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON")


def replay_range(
    records: list[dict[str, Any]], place: BatchPlace, ledger: DynamoDBLedger, invoke: Invoke | None
) -> Replayed:
    """Hands the range's records to `invoke` (None: a dry run, only counted).

    Example: 3 records, one settling r1 (not yet in the ledger), one settling r2 (already there),
    one counter → entries 2, already 1; after an invocation that reported no failure, recorded 1."""
    event = stream_event(records, place.stream_arn)
    entries: dict[str, bool] = {}  # sequence number → was already in the ledger
    unreadable = 0
    for record in event["Records"]:
        try:
            entry = ledger_entry(record)
        except (ValueError, KeyError, TypeError):
            unreadable += 1
            continue
        if entry is not None:
            there = any(known.hop == entry.hop for known in ledger.request(entry.request_id))
            entries[record["dynamodb"]["SequenceNumber"]] = there
    already = sum(entries.values())
    if invoke is None:
        return Replayed(len(records), len(entries), already, recorded=0, unreadable=unreadable, failing=0)
    try:
        answer = invoke(event)
        failed = {str(failure["itemIdentifier"]) for failure in answer.get("batchItemFailures", [])}
    except Exception:  # noqa: BLE001 - as in Lambda: the invocation failed, every record of it did
        failed = {record["dynamodb"]["SequenceNumber"] for record in records}
    recorded = sum(1 for number, there in entries.items() if not there and number not in failed)
    return Replayed(len(records), len(entries), already, recorded, unreadable, len(failed))


def replay_failures(
    sqs: Any,
    streams: Any,
    ledger: DynamoDBLedger,
    queue_url: str,
    invoke: Invoke,
    *,
    dry_run: bool = False,
    out: TextIO,
) -> int:
    """Replays every message on the failure queue (one line each); 0 when every one was replayed
    (or, dry, could be), 1 when any is kept. A kept message is made visible again at the end."""
    kept: list[str] = []
    seen: set[str] = set()
    replayed_all = True
    try:
        while True:
            answer = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=RUN_VISIBILITY_S
            )
            messages = [message for message in answer.get("Messages", []) if message["MessageId"] not in seen]
            if not messages:
                break
            for message in messages:
                seen.add(message["MessageId"])
                line, done = _replay_message(message["Body"], streams, ledger, None if dry_run else invoke)
                replayed_all &= done
                if done and not dry_run:
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                    line += "  deleted"
                else:
                    kept.append(message["ReceiptHandle"])
                    line += "  kept"
                print(line, file=out, flush=True)
    finally:
        for start in range(0, len(kept), 10):
            sqs.change_message_visibility_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                    for index, handle in enumerate(kept[start : start + 10])
                ],
            )
    print(f"{len(seen)} messages, {len(seen) - len(kept)} deleted, {len(kept)} kept", file=out)
    return 0 if replayed_all else 1


def _replay_message(body: str, streams: Any, ledger: DynamoDBLedger, invoke: Invoke | None) -> tuple[str, bool]:
    try:
        place = BatchPlace.from_message(body)
    except ValueError as error:
        return f"{error}: {body[:200]}", False
    try:
        records = read_range(streams, place)
    except RangeGoneError as error:
        return f"{place}  gone from the stream ({error.reason}): {REBUILD}", False
    result = replay_range(records, place, ledger, invoke)
    entries = f"{result.entries} {'entry' if result.entries == 1 else 'entries'}"
    unreadable = f", {result.unreadable} unreadable" if result.unreadable else ""
    if invoke is None:
        to_record = result.entries - result.already
        what = f"{entries}: {to_record} to record, {result.already} already there{unreadable} (dry run)"
        return f"{place}  {result.records} records  {what}", True
    what = (
        f"{entries}: {result.recorded} recorded, {result.already} already there{unreadable}, {result.failing} failing"
    )
    return f"{place}  {result.records} records  {what}", result.done
