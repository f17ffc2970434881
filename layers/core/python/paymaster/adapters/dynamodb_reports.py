"""Month closes and once-a-day notice markers in the ledger table (`schema`: `REPORT#`, `NOTICE#`).

A report is put with `attribute_not_exists`: a month closed twice (a retried schedule, a tick by
hand) keeps the first report, and the second run writes nothing. It carries `published` false
until its MonthClosed is on the bus, so that a run that stopped in between publishes it then.
A notice marker is the same conditional put, with a TTL and a token of its own: the forecast's
and digest's once-a-day guarantee. The token is what tells a repeat of this claim (the wire
resends a PutItem whose answer was lost, and the resend finds the marker the first one put) from
another run's: `attribute_not_exists(pk) OR #claim = :token`, as the alarm's claim
(`dynamodb_alarms`). Without it the lost answer reads "claimed already", and no notice goes out
that day.
"""

import json
import uuid
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from paymaster import schema
from paymaster.adapters.dynamodb_records import n, s
from paymaster.adapters.dynamodb_transact import store_errors
from paymaster.domain.events import MonthClosed
from paymaster.ports import StoredReport

STORE = "the ledger"
_ABSENT = "attribute_not_exists(#pk)"
_THIS_CLAIM = "#claim = :token"


class DynamoDBReports:
    """`client` is a boto3 DynamoDB client or `DynamoDBWire`; `table` the ledger table's name."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def put_report(self, report: MonthClosed) -> bool:
        item = {
            schema.PARTITION_KEY: s(schema.report_pk(report.team)),
            schema.SORT_KEY: s(report.month),
            schema.REPORT: s(report.model_dump_json()),
            schema.PUBLISHED: {"BOOL": False},
        }
        return self._put_new(item)

    def report(self, team: str, month: str) -> StoredReport | None:
        with store_errors(STORE):
            answer = self._client.get_item(
                TableName=self._table, Key=_key(schema.report_pk(team), month), ConsistentRead=True
            )
        item = answer.get("Item")
        return None if item is None else _stored(item)

    def mark_published(self, team: str, month: str) -> None:
        with store_errors(STORE):
            self._client.update_item(
                TableName=self._table,
                Key=_key(schema.report_pk(team), month),
                UpdateExpression="SET #published = :true",
                ExpressionAttributeNames={"#published": schema.PUBLISHED},
                ExpressionAttributeValues={":true": {"BOOL": True}},
            )

    def unpublished(self, team: str) -> list[StoredReport]:
        """A Query of the team's `REPORT#` partition (one item a month: a few pages in decades),
        filtered to `published` false, in month order."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk",
            "FilterExpression": "#published = :false",
            "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY, "#published": schema.PUBLISHED},
            "ExpressionAttributeValues": {":pk": s(schema.report_pk(team)), ":false": {"BOOL": False}},
            "ConsistentRead": True,
        }
        found: list[StoredReport] = []
        while True:
            with store_errors(STORE):
                answer = self._client.query(**query)
            found += [_stored(item) for item in answer.get("Items", [])]
            if not answer.get("LastEvaluatedKey"):
                return found
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def claim_notice(self, key: str, day: str, expires_at: datetime) -> bool:
        token = s(uuid.uuid4().hex)
        item = _key(key, day) | {schema.CLAIM: token, schema.TTL_ATTRIBUTE: n(int(expires_at.timestamp()))}
        return self._put_new(
            item,
            condition=f"{_ABSENT} OR {_THIS_CLAIM}",
            names={"#claim": schema.CLAIM},
            values={":token": token},
        )

    def release_notice(self, key: str, day: str) -> None:
        with store_errors(STORE):
            self._client.delete_item(TableName=self._table, Key=_key(key, day))

    def _put_new(
        self,
        item: dict[str, Any],
        *,
        condition: str = _ABSENT,
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
    ) -> bool:
        """True when put; False when `condition` failed. A report's put is `_ABSENT` alone: a
        repeat whose first answer was lost finds its own report, says False, and the close reads
        that report back and goes on, so nothing is lost."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "Item": item,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY} | (names or {}),
        }
        if values:
            request["ExpressionAttributeValues"] = values
        try:
            with store_errors(STORE):
                self._client.put_item(**request)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _stored(item: dict[str, Any]) -> StoredReport:
    report = MonthClosed.model_validate(json.loads(item[schema.REPORT]["S"]))
    return StoredReport(report, bool(item.get(schema.PUBLISHED, {}).get("BOOL")))


def _key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {schema.PARTITION_KEY: s(pk), schema.SORT_KEY: s(sk)}
