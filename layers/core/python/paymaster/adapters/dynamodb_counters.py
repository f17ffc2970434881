"""Counters and reservations in DynamoDB: one TransactWriteItems to reserve, one to settle.

Items: `paymaster.schema` (a counter per rule, bucket and window; a reservation per request).

Admission puts the reservation (`attribute_not_exists`) and adds each amount to its counter
under `committed <= cap - amount` (conditions have no arithmetic, so `cap - amount` is computed
here), all or nothing. Settlement flips the reservation from `held` to its outcome under
`state = held` and moves each counter by (actual − reserved) in the same transaction: a retried
settlement fails its condition and counts nothing twice. An opted-in team's prompt audit record
rides in that transaction too, as an unconditional `Put` into the prompts table: the reservation's
condition already lets the transaction commit once, so the record is written once, and a record
already there can never cancel the settlement (docs/LEDGER.md, "Prompt audit record").

Why transactions, and their price (DESIGN §3 a–c): counters stay separate small items (< 1 KB,
so 2 write units each inside a transaction) instead of one item per team that would grow with
every in-flight reservation and cost more per write as it grew. The cost is that concurrent
transactions on one hot counter can cancel each other (`TransactionConflict`); those are retried
with jittered backoff (`dynamodb_transact`). docs/COUNTERS.md has the numbers and the sharding plan.
"""

import hashlib
import random
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from paymaster import schema
from paymaster.adapters.dynamodb_records import (
    asked_attributes,
    call_attributes,
    n,
    prompt_item,
    s,
    usage_attribute,
)
from paymaster.adapters.dynamodb_transact import Transactions, store_errors
from paymaster.domain.audit import PromptRecord
from paymaster.domain.errors import StoreUnavailableError
from paymaster.domain.limits import Hold, Refusal
from paymaster.ports import CounterChange, CounterState, HeldReservation, Reservation, Settlement
from paymaster.schema import HELD

# Keep a window's counter this long after it ends: /v1/usage history, audits. TTL deletes it later.
COUNTER_RETENTION = timedelta(days=400)
RESERVATION_RETENTION = timedelta(days=30)
STORE = "the counter store"
# A fencing release alternates between "release the hold" and "fence the id" while a late
# admission races it; each round needs that admission to commit in between, so few suffice.
FENCE_ATTEMPTS = 3
BATCH_GET_KEYS = 100  # the most keys one BatchGetItem takes

_FITS_UNDER_CAP = "#committed <= :cap_minus_amount"
_FIRST_USE_OF_WINDOW = "attribute_not_exists(#committed)"


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class DynamoDBCounterStore:
    """`client` is a boto3 DynamoDB client; `table` the counters table's name; `prompts_table` the
    prompts table's, where settlements put their prompt audit records (None: no settlement may
    carry one)."""

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        prompts_table: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._table = table
        self._prompts_table = prompts_table
        self._transactions = Transactions(client, STORE, sleep=sleep, jitter=jitter)
        self._clock = clock

    def reserve(self, reservation: Reservation) -> list[Refusal]:
        items = [self._put_reservation(reservation)] + [self._hold(hold) for hold in reservation.holds]
        reasons = self._transactions.write(items, token=_client_token(reservation))
        if reasons is None:
            return []
        if reasons[0].get("Code") == "ConditionalCheckFailed":
            if _holds_of(reasons[0].get("Item")) == _holds_of(items[0]["Put"]["Item"]):
                return []  # a repeat that found its own reservation, committed the first time
            raise StoreUnavailableError(f"request id {reservation.request_id} was already reserved")
        return [
            Refusal(hold=hold, used=_committed(reason))
            for hold, reason in zip(reservation.holds, reasons[1:], strict=True)
            if reason.get("Code") == "ConditionalCheckFailed"
        ]

    def settle(self, settlement: Settlement) -> bool:
        items = [self._close_reservation(settlement)] + [self._move(change) for change in settlement.changes]
        if settlement.audit is not None:
            items.append(self._put_prompt(settlement.audit))
        for _ in range(FENCE_ATTEMPTS):
            reasons = self._transactions.write(items)
            if reasons is None:
                return True
            if reasons[0].get("Code") != "ConditionalCheckFailed":
                raise StoreUnavailableError(f"settlement of {settlement.request_id} was cancelled: {reasons}")
            if not settlement.fence or reasons[0].get("Item"):
                return False  # settled, released or swept before: nothing to do
            # No reservation at all: fence the request id so that a late admission cannot commit.
            # If one committed in between, the fence fails and the release is tried again.
            if self._transactions.write([self._fence(settlement)]) is None:
                return False
        raise StoreUnavailableError(f"could neither release nor fence {settlement.request_id}")

    def counters(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CounterState]:
        unique = list(dict.fromkeys(keys))
        found = {key: CounterState(0, 0) for key in unique}
        for start in range(0, len(unique), BATCH_GET_KEYS):
            request = {
                self._table: {
                    "Keys": [
                        {schema.PARTITION_KEY: s(pk), schema.SORT_KEY: s(sk)}
                        for pk, sk in unique[start : start + BATCH_GET_KEYS]
                    ],
                    "ConsistentRead": True,
                    "ProjectionExpression": "#pk, #sk, #committed, #spent",
                    "ExpressionAttributeNames": {
                        "#pk": schema.PARTITION_KEY,
                        "#sk": schema.SORT_KEY,
                        "#committed": schema.COMMITTED,
                        "#spent": schema.SPENT,
                    },
                }
            }
            while request:
                with store_errors(STORE):
                    answer = self._client.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self._table, []):
                    key = (item[schema.PARTITION_KEY]["S"], item[schema.SORT_KEY]["S"])
                    found[key] = CounterState(
                        committed=int(item.get(schema.COMMITTED, {"N": "0"})["N"]),
                        spent=int(item.get(schema.SPENT, {"N": "0"})["N"]),
                    )
                request = answer.get("UnprocessedKeys") or {}
        return found

    def expired(self, now: datetime, limit: int) -> list[HeldReservation]:
        found: list[tuple[int, HeldReservation]] = []
        for shard in range(schema.HELD_SHARDS):
            with store_errors(STORE):
                answer = self._client.query(
                    TableName=self._table,
                    IndexName=schema.HELD_INDEX,
                    KeyConditionExpression="#shard = :shard AND #until < :now",
                    ExpressionAttributeNames={"#shard": schema.HELD_SHARD, "#until": schema.HELD_UNTIL},
                    ExpressionAttributeValues={":shard": s(schema.held_shard(shard)), ":now": n(_epoch(now))},
                    Limit=limit,
                )
            for item in answer.get("Items", []):
                held = tuple(
                    (hold[schema.HOLD_PK]["S"], hold[schema.HOLD_SK]["S"], int(hold[schema.HOLD_AMOUNT]["N"]))
                    for hold in (entry["M"] for entry in item[schema.HOLDS]["L"])
                )
                request_id = schema.request_id_of(item[schema.PARTITION_KEY]["S"])
                reserved = int(item.get(schema.RESERVED, {"N": "0"})["N"])
                found.append((int(item[schema.HELD_UNTIL]["N"]), HeldReservation(request_id, held, reserved)))
        return [reservation for _, reservation in sorted(found, key=lambda pair: pair[0])][:limit]

    def _put_reservation(self, reservation: Reservation) -> dict[str, Any]:
        shard = zlib.crc32(reservation.request_id.encode()) % schema.HELD_SHARDS
        holds = [
            {
                "M": {
                    schema.HOLD_PK: s(hold.pk),
                    schema.HOLD_SK: s(hold.sk),
                    schema.HOLD_AMOUNT: n(hold.amount),
                    schema.HOLD_RULE: s(hold.rule.name),
                }
            }
            for hold in reservation.holds
        ]
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    schema.PARTITION_KEY: s(schema.reservation_pk(reservation.request_id)),
                    schema.SORT_KEY: s(schema.RESERVATION_SORT_KEY),
                    schema.STATE: s(HELD),
                    schema.HOLDS: {"L": holds},
                    schema.TEAM: s(reservation.team),
                    schema.APP: s(reservation.app),
                    schema.MODEL: s(reservation.model),
                    schema.HELD_SHARD: s(schema.held_shard(shard)),
                    schema.HELD_UNTIL: n(_epoch(reservation.held_until)),
                    schema.TTL_ATTRIBUTE: n(_epoch(reservation.held_until + RESERVATION_RETENTION)),
                    **(asked_attributes(reservation.asked) if reservation.asked is not None else {}),
                },
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _fence(self, settlement: Settlement) -> dict[str, Any]:
        """A released reservation that holds nothing, where none exists."""
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    schema.PARTITION_KEY: s(schema.reservation_pk(settlement.request_id)),
                    schema.SORT_KEY: s(schema.RESERVATION_SORT_KEY),
                    schema.STATE: s(settlement.outcome),
                    schema.HOLDS: {"L": []},
                    schema.COST: n(0),
                    schema.FLAGS: {"L": [s(flag) for flag in (*settlement.flags, schema.FENCED)]},
                    schema.TTL_ATTRIBUTE: n(_epoch(self._clock() + RESERVATION_RETENTION)),
                },
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY},
            }
        }

    def _put_prompt(self, record: PromptRecord) -> dict[str, Any]:
        """No condition: the settlement's `state = held` commits the transaction once per
        reservation, and a condition here could only cancel a settlement over its record."""
        if self._prompts_table is None:
            raise ValueError(f"settlement of {record.request_id} carries a prompt record but no prompts table is set")
        return {"Put": {"TableName": self._prompts_table, "Item": prompt_item(record)}}

    def _hold(self, hold: Hold) -> dict[str, Any]:
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": {schema.PARTITION_KEY: s(hold.pk), schema.SORT_KEY: s(hold.sk)},
            "UpdateExpression": "ADD #committed :amount SET #rule = :rule, #window_end = :window_end, "
            "#expires = if_not_exists(#expires, :expires)",
            "ExpressionAttributeNames": {
                "#committed": schema.COMMITTED,
                "#rule": schema.RULE,
                "#window_end": schema.WINDOW_END,
                "#expires": schema.TTL_ATTRIBUTE,
            },
            "ExpressionAttributeValues": {
                ":amount": n(hold.amount),
                ":rule": s(hold.rule.name),
                ":window_end": s(hold.window.end.isoformat()),
                ":expires": n(_epoch(hold.window.end + COUNTER_RETENTION)),
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if hold.cap is not None:
            room = hold.cap - hold.amount
            # A first use of the window fits if the amount alone fits; a negative room never fits.
            update["ConditionExpression"] = (
                f"{_FIRST_USE_OF_WINDOW} OR {_FITS_UNDER_CAP}" if room >= 0 else _FITS_UNDER_CAP
            )
            update["ExpressionAttributeValues"][":cap_minus_amount"] = n(room)
        return {"Update": update}

    def _close_reservation(self, settlement: Settlement) -> dict[str, Any]:
        values: dict[str, Any] = {
            ":held": s(HELD),
            ":outcome": s(settlement.outcome),
            ":cost": n(settlement.cost),
            ":flags": {"L": [s(flag) for flag in settlement.flags]},
        }
        names = {"#state": schema.STATE, "#cost": schema.COST, "#flags": schema.FLAGS, "#shard": schema.HELD_SHARD}
        recorded: dict[str, dict[str, Any]] = {}
        if settlement.usage is not None:
            recorded[schema.USAGE] = usage_attribute(settlement.usage)
        if settlement.billed_on is not None:
            recorded[schema.BILLED_ON] = s(settlement.billed_on)
        if settlement.call is not None:
            recorded |= call_attributes(settlement.call)
        assignments = "#state = :outcome, #cost = :cost, #flags = :flags"
        for number, (attribute, value) in enumerate(recorded.items()):
            names[f"#a{number}"], values[f":a{number}"] = attribute, value
            assignments += f", #a{number} = :a{number}"
        return {
            "Update": {
                "TableName": self._table,
                "Key": {
                    schema.PARTITION_KEY: s(schema.reservation_pk(settlement.request_id)),
                    schema.SORT_KEY: s(schema.RESERVATION_SORT_KEY),
                },
                "UpdateExpression": f"SET {assignments} REMOVE #shard",
                "ConditionExpression": "#state = :held",
                # Whether a reservation exists at all, for a fencing release.
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def _move(self, change: CounterChange) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table,
                "Key": {schema.PARTITION_KEY: s(change.pk), schema.SORT_KEY: s(change.sk)},
                "UpdateExpression": "ADD #committed :delta, #spent :spent",
                "ExpressionAttributeNames": {"#committed": schema.COMMITTED, "#spent": schema.SPENT},
                "ExpressionAttributeValues": {":delta": n(change.delta), ":spent": n(change.spent)},
            }
        }


def _client_token(reservation: Reservation) -> str:
    """The same for every repeat of one reservation, another for any other (ClientRequestToken:
    at most 36 characters). A reservation is its request id, holds and expiry."""
    holds = [(hold.pk, hold.sk, hold.amount, hold.cap) for hold in reservation.holds]
    key = repr((reservation.request_id, holds, _epoch(reservation.held_until)))
    return hashlib.sha256(key.encode()).hexdigest()[:36]


def _holds_of(item: dict[str, Any] | None) -> Any:
    """A stored reservation's state and holds, to recognise one's own (None for no item)."""
    if not item:
        return None
    return item.get(schema.STATE), item.get(schema.HOLDS)


def _committed(reason: dict[str, Any]) -> int:
    item = reason.get("Item") or {}
    return int(item.get(schema.COMMITTED, {"N": "0"})["N"])
