"""The ledger in DynamoDB: read from the counters table's stream, written once per reservation.

`ledger_entry(record)` is what one stream record says: an entry when a reservation leaves
`held` for its outcome (a MODIFY whose old image is held and whose new image is not), nothing
for anything else —
- counters (`RULE#…`): the rollups are the ledger's own sums, and DynamoDB Streams keep no
  transaction's records together or in order, so nothing is derived from counter records;
- a reservation being admitted (INSERT, held) or deleted by TTL (REMOVE);
- an INSERT already final: a fence (`schema.FENCED`), put where no admission had committed so
  that a late one cannot. Nothing was held or served under it and it names no team, so it is
  not a call. (A release of a reservation that did commit is a MODIFY, and is an entry.)

A denial's entry comes from its RequestDenied event instead (`functions/ledger_denials`), and is
recorded the same way.

`DynamoDBLedger.record` writes an entry and adds it to its rollups in ONE TransactWriteItems:
a conditional Put of the entry (`attribute_not_exists`, keyed by team, month, admission time
and reservation id — all from the record itself) and an ADD per rollup. When the stream
delivers a record again, the entry is there, its condition fails, the whole transaction is
cancelled, and nothing is counted twice. Conflicts with other transactions on the same rollups
(another shard's batch, say) and throttling are retried with jittered backoff
(`dynamodb_transact`).

Cost per entry: the Put (586 B for a typical caller, 1.3 KB at every cap, `bench/ledger_writes.py`)
and five or six rollup ADDs (< 200 B each), doubled inside the transaction, plus the request-id
index's copy of the entry: 15 write units, 18 at the caps. docs/LEDGER.md has the hot-partition
ceiling.

`rollup` (a GetItem) and `breakdown` (a Query of one month × dimension partition) read the
rollups, all under `SPEND#`: what the gateway answers `GET /v1/usage` with, and all its role may
read of this table. `calls` and `request` read entries, for `paymaster ledger`; `between`, a
team's entries of a span, for the digest and the month close (docs/SCHEDULES.md).
"""

import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from paymaster import schema
from paymaster.adapters.dynamodb_records import entry_attributes, n, recorded_entry, s
from paymaster.adapters.dynamodb_transact import Transactions, store_errors
from paymaster.domain.ledger import Dimension, LedgerEntry, Rollup, Totals, rollups, totals
from paymaster.domain.reports import utc_months
from paymaster.domain.windows import Window

# A month's entries and rollups are kept this long after the month ends, then TTL deletes them:
# long enough to compare a month with the same month a year before, through the next year's
# close, as the counters are (`dynamodb_counters.COUNTER_RETENTION`).
LEDGER_RETENTION = timedelta(days=400)
STORE = "the ledger"

_TOTALS = {
    schema.CALLS: "calls",
    schema.COST: "cost",
    schema.USAGE_INPUT: "input_tokens",
    schema.USAGE_OUTPUT: "output_tokens",
    schema.USAGE_CACHE_READ: "cache_read_tokens",
    schema.USAGE_CACHE_WRITE: "cache_write_tokens",
    schema.DENIALS: "denials",
}
_NOT_YET_RECORDED = "attribute_not_exists(#pk)"


def ledger_entry(record: Mapping[str, Any]) -> LedgerEntry | None:
    """The entry a DynamoDB Streams record (as Lambda delivers it) makes, or None.

    Raises ValueError, KeyError or TypeError for a reservation leaving `held` that it cannot read.
    """
    change = record["dynamodb"]
    keys = change["Keys"]
    pk, sk = keys[schema.PARTITION_KEY]["S"], keys[schema.SORT_KEY]["S"]
    if sk != schema.RESERVATION_SORT_KEY or not pk.startswith(schema.reservation_pk("")):
        return None
    if record["eventName"] != "MODIFY":
        return None
    old, new = change.get("OldImage"), change.get("NewImage")
    if old is None or new is None:
        raise ValueError("the counters' stream must carry NEW_AND_OLD_IMAGES")
    if old[schema.STATE]["S"] != schema.HELD or new[schema.STATE]["S"] == schema.HELD:
        return None
    request_id, hop = schema.split_hop(schema.request_id_of(pk))
    return recorded_entry(new, request_id=request_id, hop=hop, outcome=new[schema.STATE]["S"])


class DynamoDBLedger:
    """`client` is a boto3 DynamoDB client or `DynamoDBWire`; `table` the ledger table's name."""

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._table = table
        self._transactions = Transactions(client, STORE, sleep=sleep, jitter=jitter)

    def record(self, entry: LedgerEntry) -> bool:
        expires_at = n(int((entry.month_ends_at + LEDGER_RETENTION).timestamp()))
        adds = totals(entry)
        items = [self._put(entry, expires_at)] + [self._add(rollup, adds, expires_at) for rollup in rollups(entry)]
        # Only the entry's Put has a condition: a cancellation for a condition is "already recorded".
        return self._transactions.write(items) is None

    def calls(self, team: str, month: str) -> Iterator[LedgerEntry]:
        """Every entry of `team` admitted in the UTC `month` (`2026-12`), in order of admission."""
        yield from self._query(
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": schema.PARTITION_KEY},
            ExpressionAttributeValues={":pk": s(schema.calls_pk(team, month))},
        )

    def between(self, team: str, start: datetime, end: datetime) -> Iterator[LedgerEntry]:
        """Every entry of `team` admitted in [start, end), in order of admission: for each UTC month
        the span overlaps, a Query of its partition with `sk BETWEEN <start> AND <end>` (ISO-8601
        UTC sorts as it reads; an entry admitted exactly at `end` sorts after `<end>` by its
        `#<id>` suffix, and so is left out)."""
        low, high = _iso(start), _iso(end)
        for month in utc_months(Window("span", start, end)):
            yield from self._query(
                KeyConditionExpression="#pk = :pk AND #sk BETWEEN :low AND :high",
                ExpressionAttributeNames={"#pk": schema.PARTITION_KEY, "#sk": schema.SORT_KEY},
                ExpressionAttributeValues={
                    ":pk": s(schema.calls_pk(team, month)),
                    ":low": s(low),
                    ":high": s(high),
                },
            )

    def request(self, request_id: str) -> list[LedgerEntry]:
        """A request's entries: one, or one per hop when it fell back, in order of admission."""
        return list(
            self._query(
                IndexName=schema.REQUEST_INDEX,
                KeyConditionExpression="#request = :request",
                ExpressionAttributeNames={"#request": schema.REQUEST_ID},
                ExpressionAttributeValues={":request": s(request_id)},
            )
        )

    def rollup(self, rollup: Rollup) -> Totals:
        """What the rollup adds up to so far (zeros when nothing has been added)."""
        pk, sk = _rollup_key(rollup)
        with store_errors(STORE):
            answer = self._client.get_item(
                TableName=self._table,
                Key={schema.PARTITION_KEY: s(pk), schema.SORT_KEY: s(sk)},
                ConsistentRead=True,
            )
        return _totals(answer.get("Item", {}))

    def breakdown(self, team: str, month: str, dimension: Dimension) -> dict[str, Totals]:
        """Every app, model or user of `team`'s UTC `month` (`2026-12`) and what its calls add up to:
        one Query of the partition `SPEND#<team>#<month>#<dimension>`, strongly consistent, every
        1 MB page (a rollup is under 200 B: about 5,000 rows a page)."""
        rows: dict[str, Totals] = {}
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY},
            "ExpressionAttributeValues": {":pk": s(schema.rollup_pk(team, month, dimension))},
            "ConsistentRead": True,
        }
        while True:
            with store_errors(STORE):
                answer = self._client.query(**query)
            rows |= {item[schema.SORT_KEY]["S"]: _totals(item) for item in answer.get("Items", [])}
            if not answer.get("LastEvaluatedKey"):
                return rows
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def _query(self, **query: Any) -> Iterator[LedgerEntry]:
        start: dict[str, Any] | None = None
        while True:
            page = query | ({"ExclusiveStartKey": start} if start else {})
            with store_errors(STORE):
                answer = self._client.query(TableName=self._table, **page)
            for item in answer.get("Items", []):
                yield recorded_entry(
                    item,
                    request_id=item[schema.REQUEST_ID]["S"],
                    hop=int(item[schema.HOP]["N"]),
                    outcome=item[schema.OUTCOME]["S"],
                )
            start = answer.get("LastEvaluatedKey")
            if not start:
                return

    def _put(self, entry: LedgerEntry, expires_at: dict[str, str]) -> dict[str, Any]:
        reservation_id = entry.request_id + (f"{schema.HOP_SEPARATOR}{entry.hop}" if entry.hop else "")
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    schema.PARTITION_KEY: s(schema.calls_pk(entry.team, entry.month)),
                    schema.SORT_KEY: s(schema.entry_sk(entry.admitted, reservation_id)),
                    schema.REQUEST_ID: s(entry.request_id),
                    schema.HOP: n(entry.hop),
                    schema.OUTCOME: s(entry.outcome),
                    schema.TTL_ATTRIBUTE: expires_at,
                    **entry_attributes(entry),
                },
                "ConditionExpression": _NOT_YET_RECORDED,
                "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY},
            }
        }

    def _add(self, rollup: Rollup, adds: Totals, expires_at: dict[str, str]) -> dict[str, Any]:
        """ADD what the entry adds (a zero is left out: an absent total reads as 0); the expiry is
        the same for every entry of the period, so it is simply set."""
        pk, sk = _rollup_key(rollup)
        added = {name: field for name, field in _TOTALS.items() if getattr(adds, field)}
        return {
            "Update": {
                "TableName": self._table,
                "Key": {schema.PARTITION_KEY: s(pk), schema.SORT_KEY: s(sk)},
                "UpdateExpression": "ADD "
                + ", ".join(f"#{field} :{field}" for field in added.values())
                + " SET #expires = :expires",
                "ExpressionAttributeNames": {f"#{field}": name for name, field in added.items()}
                | {"#expires": schema.TTL_ATTRIBUTE},
                "ExpressionAttributeValues": {f":{field}": n(getattr(adds, field)) for field in added.values()}
                | {":expires": expires_at},
            }
        }


def _totals(item: Mapping[str, Any]) -> Totals:
    """A rollup item's sums; an attribute never added to (no cache tokens, say) is 0."""
    return Totals(**{field: int(item.get(name, {"N": "0"})["N"]) for name, field in _TOTALS.items()})


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rollup_key(rollup: Rollup) -> tuple[str, str]:
    sk = schema.ROLLUP_TOTAL if rollup.dimension is None else rollup.value
    assert sk is not None  # a dimension's rollup names its value
    return schema.rollup_pk(rollup.team, rollup.period, rollup.dimension), sk
