"""A budget alarm's markers in the ledger table (`schema.alert_pk`; docs/ALARMS.md): each call
one conditional write, so that racing writers and repeated deliveries agree without a read.

- `crossed_by`: GetItem of the crossing marker (eventually consistent: `cross` decides).
- `cross`: PutItem `ALERT#<rule>#<bucket>#<window>` / `AT#<pct>@<amount>` naming the stream record,
  if no marker is there **or the one there names this record**. A second record finding it is
  refused (ConditionalCheckFailed → False); the same record delivered again passes and publishes
  again, which is what makes a crossing whose PutEvents failed go out on redelivery.
- `claim`: PutItem `… / SENT#<pct>@<amount>` `sending` with a lease, if none is there, or a `sending`
  one whose lease ran out (its sender died), or this claim's own (a repeat of this PutItem
  whose first answer was lost; each claim carries its own token).
- `sent`: UpdateItem to `sent` (no lease: never taken again). `release`: DeleteItem of a claim
  that is still `sending`.

Markers expire `ALERT_RETENTION` after their window ends: long past the last settlement that
can land on the window (a hold lives 20 minutes) and every retry of its stream records (24 h).
"""

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from paymaster import schema
from paymaster.adapters.dynamodb_records import n, s
from paymaster.adapters.dynamodb_transact import store_errors
from paymaster.domain.alarms import SpendChange
from paymaster.domain.events import BudgetThresholdCrossed

ALERT_RETENTION = timedelta(days=35)
STORE = "the ledger's alarm markers"

_NOT_THERE = "attribute_not_exists(#pk)"
_MADE_BY_THIS_RECORD = "#record = :record"
_LEASE_OVER = "(#notice = :sending AND #lease < :now)"
_THIS_CLAIM = "(#notice = :sending AND #token = :token)"


def spend_change(record: Mapping[str, Any]) -> SpendChange | None:
    """What a counters' stream record (as Lambda delivers it) says of a counter's `spent`, or None:
    for anything but a counter (`RULE#…`), a TTL deletion, or a write that left `spent` as it
    was (a hold, a release). A counter's first write is an INSERT: its old `spent` is 0.

    Raises ValueError, KeyError or TypeError for a counter record it cannot read.
    """
    change = record["dynamodb"]
    pk = change["Keys"][schema.PARTITION_KEY]["S"]
    if not pk.startswith(schema.COUNTER_PREFIX) or record["eventName"] not in ("INSERT", "MODIFY"):
        return None
    new = change.get("NewImage")
    if new is None:
        raise ValueError("the counters' stream must carry NEW_AND_OLD_IMAGES")
    old = change.get("OldImage") or {}
    old_spent, new_spent = _spent(old), _spent(new)
    if new_spent == old_spent:
        return None
    rule, bucket = schema.split_counter_pk(pk)
    return SpendChange(
        rule=rule,
        bucket=bucket,
        window=change["Keys"][schema.SORT_KEY]["S"],
        window_end=datetime.fromisoformat(new[schema.WINDOW_END]["S"]),
        old_spent=old_spent,
        new_spent=new_spent,
    )


def _spent(image: Mapping[str, Any]) -> int:
    return int(image[schema.SPENT]["N"]) if schema.SPENT in image else 0


class DynamoDBAlarmMarks:
    """`client` a boto3 DynamoDB client or `DynamoDBWire`; `table` the ledger table's name."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def crossed_by(self, crossing: BudgetThresholdCrossed) -> str | None:
        with store_errors(STORE):
            answer = self._client.get_item(
                TableName=self._table,
                Key=self._key(crossing, self._crossed_sk(crossing)),
                ProjectionExpression="#record",
                ExpressionAttributeNames={"#record": schema.CROSSED_BY},
            )
        item = answer.get("Item")
        return None if item is None else str(item[schema.CROSSED_BY]["S"])

    def cross(self, crossing: BudgetThresholdCrossed, record_id: str) -> bool:
        item = self._key(crossing, self._crossed_sk(crossing)) | {
            schema.CROSSED_BY: s(record_id),
            schema.TTL_ATTRIBUTE: self._expires(crossing),
        }
        return self._conditional(
            "put_item",
            Item=item,
            ConditionExpression=f"{_NOT_THERE} OR {_MADE_BY_THIS_RECORD}",
            ExpressionAttributeNames={"#pk": schema.PARTITION_KEY, "#record": schema.CROSSED_BY},
            ExpressionAttributeValues={":record": s(record_id)},
        )

    def claim(self, crossing: BudgetThresholdCrossed, now: datetime, lease_s: int) -> bool:
        item = self._key(crossing, self._sent_sk(crossing)) | {
            schema.NOTICE: s(schema.SENDING),
            schema.LEASE_UNTIL: n(int(now.timestamp()) + lease_s),
            schema.CLAIM: s(uuid.uuid4().hex),
            schema.TTL_ATTRIBUTE: self._expires(crossing),
        }
        return self._conditional(
            "put_item",
            Item=item,
            ConditionExpression=f"{_NOT_THERE} OR {_LEASE_OVER} OR {_THIS_CLAIM}",
            ExpressionAttributeNames={
                "#pk": schema.PARTITION_KEY,
                "#notice": schema.NOTICE,
                "#lease": schema.LEASE_UNTIL,
                "#token": schema.CLAIM,
            },
            ExpressionAttributeValues={
                ":sending": s(schema.SENDING),
                ":now": n(int(now.timestamp())),
                ":token": item[schema.CLAIM],
            },
        )

    def sent(self, crossing: BudgetThresholdCrossed) -> None:
        with store_errors(STORE):
            self._client.update_item(
                TableName=self._table,
                Key=self._key(crossing, self._sent_sk(crossing)),
                UpdateExpression="SET #notice = :sent REMOVE #lease",
                ExpressionAttributeNames={"#notice": schema.NOTICE, "#lease": schema.LEASE_UNTIL},
                ExpressionAttributeValues={":sent": s(schema.SENT)},
            )

    def release(self, crossing: BudgetThresholdCrossed) -> None:
        self._conditional(
            "delete_item",
            Key=self._key(crossing, self._sent_sk(crossing)),
            ConditionExpression="#notice = :sending",
            ExpressionAttributeNames={"#notice": schema.NOTICE},
            ExpressionAttributeValues={":sending": s(schema.SENDING)},
        )

    def _conditional(self, operation: str, **request: Any) -> bool:
        try:
            with store_errors(STORE):
                getattr(self._client, operation)(TableName=self._table, **request)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    @staticmethod
    def _crossed_sk(crossing: BudgetThresholdCrossed) -> str:
        return schema.crossed_sk(crossing.threshold_pct, crossing.threshold)

    @staticmethod
    def _sent_sk(crossing: BudgetThresholdCrossed) -> str:
        return schema.sent_sk(crossing.threshold_pct, crossing.threshold)

    @staticmethod
    def _key(crossing: BudgetThresholdCrossed, sk: str) -> dict[str, Any]:
        pk = schema.alert_pk(crossing.rule, crossing.scope, crossing.window)
        return {schema.PARTITION_KEY: s(pk), schema.SORT_KEY: s(sk)}

    @staticmethod
    def _expires(crossing: BudgetThresholdCrossed) -> dict[str, str]:
        return n(int((crossing.resets_at + ALERT_RETENTION).timestamp()))
