"""TransactWriteItems for the local stand-in, at a cost that does not grow with the table.

moto 5.2.5 backs up a transaction by deep-copying every table it touches, whole, once per
transact item (`original_table_state`), so each transaction costs O(items ever written): under
`make run` moto went from ~30 to ~200 ms of CPU per call within 200 requests and reached 7.9 GB
after ~1,300. This replacement does what DynamoDB does, in two phases:

1. check every item's condition against the items as they are — nothing is written yet; if any
   condition fails, the transaction is cancelled with each item's reason (and, with
   `ReturnValuesOnConditionCheckFailure: ALL_OLD`, the item) and nothing changed;
2. apply the writes, after copying only the items they touch; if a write fails (a validation
   error moto finds only while applying, such as ADD on a string), those items are put back as
   they were and the stream records the writes produced are dropped.

Conditions in one transaction never see each other's writes: each item appears once (DynamoDB
refuses a transaction that names an item twice), so checking them all first is exact.

`install()` swaps it into moto's DynamoDB backend; the local AWS server calls it at start. It
also stops moto keeping every DynamoDB item, stream record and shard iterator ever made:
moto's `BaseModel` appends each instance to its class's `instances_tracked` (for its
dashboard) and never lets go, and every update deep-copies its item once in moto and once
here — 11 dead items per gateway call, which was most of the ~19 KB a soak's stand-in grew per
request; a stream poller makes a new shard iterator every poll.
"""

import copy
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import StreamRecord, Table
from moto.dynamodbstreams.models import ShardIterator

MAX_TRANSACT_ITEMS = 100
OPERATIONS = frozenset({"ConditionCheck", "Put", "Delete", "Update"})

Key = tuple[DynamoType, DynamoType | None]
Reason = tuple[str, str, dict[str, Any] | None] | tuple[None, None, None]


def install() -> None:
    """Replaces moto's TransactWriteItems with `transact_write_items` (idempotent)."""
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign,assignment]
    # `object.__new__` instead of BaseModel's, which records the instance; /moto-api/reset
    # resets the list, so emptying it once would not last. moto's dashboard (/moto-api/data.json)
    # then lists no DynamoDB items — the tables are still there to read through DynamoDB itself.
    for model in (Item, StreamRecord, ShardIterator):
        model.__new__ = staticmethod(_untracked)  # type: ignore[method-assign]


def _untracked(cls: type[Any], *_args: Any, **_kwargs: Any) -> Any:
    return object.__new__(cls)


def transact_write_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """All or nothing, touching only the items named. Raises moto's own exceptions, so the
    server answers exactly as DynamoDB (and moto) would."""
    if len(transact_items) > MAX_TRANSACT_ITEMS:
        raise TooManyTransactionsException()
    targets = [_target(backend, item) for item in transact_items]
    seen: set[tuple[str, Key]] = set()
    for table, key, _, _ in targets:
        if (table.name, key) in seen:
            raise MultipleTransactionsException()
        seen.add((table.name, key))

    reasons = [_check(table, key, op) for table, key, _, op in targets]
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)

    before = {(table.name, key): (table, key, copy.deepcopy(table.get_item(*key))) for table, key, _, _ in targets}
    streams = {table.name: (table, len(table.stream_shard.items)) for table, _, _, _ in targets if table.stream_shard}
    try:
        for table, key, op_type, op in targets:
            _apply(backend, table, key, op_type, op)
    except BaseException:
        for table, key, item in before.values():
            _restore(table, key, item)
        for table, length in streams.values():
            assert table.stream_shard is not None
            del table.stream_shard.items[length:]
        raise


def _target(backend: DynamoDBBackend, item: dict[str, Any]) -> tuple[Table, Key, str, dict[str, Any]]:
    if len(item) != 1:
        raise TransactWriteSingleOpException()
    op_type, op = next(iter(item.items()))
    if op_type not in OPERATIONS:
        raise ValueError(f"Unsupported transaction operation {op_type!r}")
    table = backend.get_table(op["TableName"])
    attributes = op["Item"] if op_type == "Put" else op["Key"]
    hash_key = DynamoType(attributes[table.hash_key_attr])
    range_key = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
    return table, (hash_key, range_key), op_type, op


def _check(table: Table, key: Key, op: dict[str, Any]) -> Reason:
    condition = op.get("ConditionExpression")
    if condition is None:
        return None, None, None
    current = table.get_item(*key)
    check = get_filter_expression(condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues"))
    if check.expr(current):
        return None, None, None
    old = None
    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current is not None:
        old = current.to_json()["Attributes"]
    return "ConditionalCheckFailed", "The conditional request failed", old


def _apply(backend: DynamoDBBackend, table: Table, key: Key, op_type: str, op: dict[str, Any]) -> None:
    """The write itself; its condition already held (and nothing has changed the item since)."""
    names, values = op.get("ExpressionAttributeNames", {}), op.get("ExpressionAttributeValues", {})
    if op_type == "Put":
        table.put_item(op["Item"], overwrite=True)
    elif op_type == "Delete":
        table.delete_item(*key)
    elif op_type == "Update":
        backend.update_item(
            table.name,
            op["Key"],
            update_expression=op["UpdateExpression"],
            expression_attribute_names=names,
            expression_attribute_values=values,
        )


def _restore(table: Table, key: Key, item: Item | None) -> None:
    hash_key, range_key = key
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item  # type: ignore[assignment]  # moto types the dict for range tables
        return
    if item is None:
        table.items[hash_key].pop(range_key, None)
        if not table.items[hash_key]:
            del table.items[hash_key]
    else:
        table.items[hash_key][range_key] = item
