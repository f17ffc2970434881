"""What the ledger costs per settled call: the stream records the ledger function reads, the
DynamoDB requests it sends and the write units they are billed, and the entry's size; and the
same per denial, recorded from its RequestDenied event (rows `-`).

Calls are admitted and settled through the gateway's own counter store on the serialised moto
server; the counters' stream is then read as the local runner reads it, and each record goes
through the ledger function's adapter (`ledger_entry`, `DynamoDBLedger.record`) on a client that
counts its requests. Write units are billed as DynamoDB bills them (`requests_per_admission`):
per item written, the larger of its size before and after, per started KB, doubled in a
transaction; the request-id index holds a copy of each entry (1 unit per started KB of it).

    .venv/bin/python -m bench.ledger_writes
"""

import json
import math
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.credentials import Credentials

from bench._support import dynamodb_client, machine, moto_dynamodb, policy_with_rules
from bench.requests_per_admission import CALL, CALLER, METADATA, REQUEST, CountingTransport, item_size
from paymaster import schema
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_ledger import DynamoDBLedger, ledger_entry
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.memory import MemorySettlementQueue
from paymaster.adapters.tokenizer import count_tokens
from paymaster.domain.chat import Usage
from paymaster.domain.events import RequestDenied, denied_entry
from paymaster.domain.ledger import LedgerEntry, rollups
from paymaster.domain.metering import Reported
from paymaster.ports import CallRecord
from paymaster.services.admission import AdmissionService
from paymaster_local.resources import COUNTERS_TABLE, LEDGER_TABLE

ROUNDS = 20
DENIAL_SAMPLE = Path(__file__).resolve().parents[1] / "events" / "published" / "request-denied.json"
LOCAL = Credentials("local", "local")
# The largest entry a caller can make: four labels at the cap, a user and a provider id at the
# cap, three deployments tried, a long assumed-role session name.
WIDE_CALLER = replace(
    CALLER,
    arn="arn:aws:sts::111111111111:assumed-role/search-ranker-production-eu-west-1/" + "s" * 64,
)
WIDE_METADATA = {f"label-{index}-" + "k" * 56: "v" * 64 for index in range(4)}
WIDE_CALL = CallRecord(
    "bedrock-us-east-1/us.amazon.nova-lite-v1:0",
    ("openai/gpt-4o-mini", "bedrock-us-west-2/us.amazon.nova-lite-v1:0", "bedrock-us-east-1/us.amazon.nova-lite-v1:0"),
    "p" * 64,
    15_812,
    1_240,
)
WIDE_REQUEST = REQUEST.model_copy(update={"user": "u" * 64})


def stream_records(url: str) -> list[dict[str, Any]]:
    """Every record of the counters' stream, from its start, as GetRecords gives them."""
    client = boto3.client(
        "dynamodbstreams", endpoint_url=url, region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
    )
    arn = dynamodb_client(url).describe_table(TableName=COUNTERS_TABLE)["Table"]["LatestStreamArn"]
    (shard,) = client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = client.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
    records: list[dict[str, Any]] = []
    next_iterator = iterator["ShardIterator"]
    while next_iterator:
        answer = client.get_records(ShardIterator=next_iterator, Limit=1000)
        records += answer["Records"]
        if not answer["Records"]:
            break
        next_iterator = answer.get("NextShardIterator")
    return records


def rollup_keys(entry: LedgerEntry) -> list[dict[str, Any]]:
    keys = []
    for rollup in rollups(entry):
        sk = schema.ROLLUP_TOTAL if rollup.dimension is None else rollup.value
        pk = schema.rollup_pk(rollup.team, rollup.period, rollup.dimension)
        keys.append({schema.PARTITION_KEY: {"S": pk}, schema.SORT_KEY: {"S": sk}})
    return keys


def record_measured(ledger: DynamoDBLedger, reader: Any, entry: LedgerEntry) -> tuple[int, int]:
    """Records `entry`; the size of the entry written and the write units its transaction cost."""
    keys = rollup_keys(entry)
    before = [item_size(reader.get_item(TableName=LEDGER_TABLE, Key=key).get("Item", {})) for key in keys]
    ledger.record(entry)
    after = [item_size(reader.get_item(TableName=LEDGER_TABLE, Key=key).get("Item", {})) for key in keys]
    (stored,) = reader.query(
        TableName=LEDGER_TABLE,
        IndexName=schema.REQUEST_INDEX,
        KeyConditionExpression="#r = :r",
        ExpressionAttributeNames={"#r": schema.REQUEST_ID},
        ExpressionAttributeValues={":r": {"S": entry.request_id}},
    )["Items"]
    size = item_size(stored)
    kb = max(1, math.ceil(size / 1024))
    rollup_units = sum(2 * max(1, math.ceil(max(old, new) / 1024)) for old, new in zip(before, after, strict=True))
    return size, 2 * kb + rollup_units + kb  # the Put, the ADDs, the index's copy


def measure_denials(url: str, wide: bool) -> str:
    """Denials recorded from RequestDenied events (the sample's, each under its own request id):
    no stream record, one request each."""
    sent: Counter[str] = Counter()
    wire = DynamoDBWire(
        CountingTransport(sent), endpoint_url=url, region="us-east-1", credentials=Credentials("l", "l")
    )
    ledger = DynamoDBLedger(wire, LEDGER_TABLE)
    reader = dynamodb_client(url)
    detail = json.loads(DENIAL_SAMPLE.read_text())["detail"]
    if wide:
        detail |= {"user": "u" * 64, "principal_arn": WIDE_CALLER.arn, "metadata": WIDE_METADATA}
        detail["rule"] |= {"scope": "team=search/user=" + "u" * 64}
    sizes: list[int] = []
    units = 0
    for round_ in range(ROUNDS):
        event = RequestDenied.model_validate(detail | {"request_id": f"denied-{round_}"})
        size, entry_units = record_measured(ledger, reader, denied_entry(event))
        sizes.append(size)
        units += entry_units
    shape = "wide caller" if wide else "typical"
    return (
        f"{'-':>5}  {shape:<11}  {0:>14.1f}  {sent.total() / ROUNDS:>16.2f}"
        f"  {max(sizes):>7} B  {units / ROUNDS:>15.1f}   {dict(sent)}   (denials)"
    )


def measure(url: str, rules: int, wide: bool) -> str:
    counters = DynamoDBWire(
        httpx.HTTPTransport(), endpoint_url=url, region="us-east-1", credentials=Credentials("l", "l")
    )
    service = AdmissionService(
        policy_with_rules(rules),
        DynamoDBCounterStore(counters, COUNTERS_TABLE),
        count_tokens,
        lambda: datetime.now(UTC),
        MemorySettlementQueue(),
    )
    caller, metadata, call, request = (
        (WIDE_CALLER, WIDE_METADATA, WIDE_CALL, WIDE_REQUEST) if wide else (CALLER, METADATA, CALL, REQUEST)
    )
    for round_ in range(ROUNDS):
        admitted = service.admit(caller, request, f"r{rules}-{round_}", metadata)
        service.settle(admitted, Reported(Usage(30, 100, 8, 2)), call)

    sent: Counter[str] = Counter()
    wire = DynamoDBWire(
        CountingTransport(sent), endpoint_url=url, region="us-east-1", credentials=Credentials("l", "l")
    )
    ledger = DynamoDBLedger(wire, LEDGER_TABLE)
    reader = dynamodb_client(url)
    records = stream_records(url)
    entries = units = 0
    entry_sizes: list[int] = []
    for record in records:
        entry = ledger_entry(record)
        if entry is None:
            continue
        size, entry_units = record_measured(ledger, reader, entry)
        entry_sizes.append(size)
        units += entry_units
        entries += 1
    shape = "wide caller" if wide else "typical"
    return (
        f"{rules:>5}  {shape:<11}  {len(records) / entries:>14.1f}  {sent.total() / entries:>16.2f}"
        f"  {max(entry_sizes):>7} B  {units / entries:>15.1f}   {dict(sent)}"
    )


def main() -> None:
    print(f"machine: {machine()}; {ROUNDS} settled calls per row")
    print(f"{'rules':>5}  {'caller':<11}  {'records/call':>14}  {'requests/call':>16}  {'entry':>9}  {'WCU/call':>15}")
    for rules in (1, 3, 6):
        for wide in (False, True):
            with moto_dynamodb() as url:
                print(measure(url, rules, wide))
    for wide in (False, True):
        with moto_dynamodb() as url:
            print(measure_denials(url, wide))


if __name__ == "__main__":
    main()
