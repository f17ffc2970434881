"""The alarm markers on the stand-in's ledger table and in memory, held to the same behaviour:
a threshold is its percentage at an amount, its marker names the one record that took it."""

from datetime import UTC, datetime
from typing import Any

import pytest

from paymaster import schema
from paymaster.adapters.dynamodb_alarms import DynamoDBAlarmMarks
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.memory import MemoryAlarmMarks
from paymaster.domain.alarms import SpendChange
from paymaster.domain.windows import window
from paymaster.ports import AlarmMarks
from paymaster.services.alarms import ThresholdWatch
from paymaster_local.resources import LEDGER_TABLE
from tests.local_aws import local_client
from tests.policies import policy_with

NOW = datetime(2026, 12, 19, 17, 42, tzinfo=UTC)
MONTHLY = {
    "name": "search-monthly",
    "when": {"team": "search"},
    "limit": 2000,
    "unit": "cost_per_month",
    "per": ["team"],
}
MONTH = window("month", UTC, NOW)


def usd(dollars: int) -> int:
    return dollars * 1_000_000


def change(old: int, new: int) -> SpendChange:
    return SpendChange("search-monthly", "team=search", MONTH.id, MONTH.end, old, new)


@pytest.fixture(params=["memory", "dynamodb"])
def marks(request: pytest.FixtureRequest) -> AlarmMarks:
    if request.param == "memory":
        return MemoryAlarmMarks()
    aws_url: str = request.getfixturevalue("aws_url")
    dynamodb: DynamoDBWire = request.getfixturevalue("dynamodb")
    local_client("dynamodb", aws_url).create_table(**schema.LEDGER.create_table_request(LEDGER_TABLE))
    return DynamoDBAlarmMarks(dynamodb, LEDGER_TABLE)


def test_a_marker_names_the_record_that_took_it_and_refuses_every_other(marks: AlarmMarks) -> None:
    [crossing] = ThresholdWatch(policy_with([MONTHLY]), MemoryAlarmMarks()).crossings(
        change(usd(990), usd(1010)), "unused", NOW
    )

    before = marks.crossed_by(crossing)
    took = marks.cross(crossing, "record-1")
    again = marks.cross(crossing, "record-1")
    other = marks.cross(crossing, "record-2")

    assert (before, took, again, other) == (None, True, True, False)
    assert marks.crossed_by(crossing) == "record-1"


def test_a_cap_lowered_below_the_spend_publishes_the_thresholds_it_left_behind_once(marks: AlarmMarks) -> None:
    ThresholdWatch(policy_with([MONTHLY]), marks).crossings(change(0, usd(1500)), "record-1", NOW)
    lowered = ThresholdWatch(policy_with([MONTHLY | {"limit": 1000}]), marks)

    first = lowered.crossings(change(usd(1500), usd(1510)), "record-2", NOW)
    cold = ThresholdWatch(policy_with([MONTHLY | {"limit": 1000}]), marks)  # another container

    assert [crossing.crossing_id.rsplit("#", 1)[1] for crossing in first] == [
        "50@500000000",
        "80@800000000",
        "100@1000000000",
    ]
    assert cold.crossings(change(usd(1510), usd(1520)), "record-3", NOW) == []


def test_the_markers_sort_keys_carry_percentage_and_amount(aws_url: str, dynamodb: DynamoDBWire) -> None:
    local_client("dynamodb", aws_url).create_table(**schema.LEDGER.create_table_request(LEDGER_TABLE))
    marks = DynamoDBAlarmMarks(dynamodb, LEDGER_TABLE)
    [crossing] = ThresholdWatch(policy_with([MONTHLY]), marks).crossings(change(usd(990), usd(1010)), "record-1", NOW)
    assert marks.claim(crossing, NOW, 60)
    marks.sent(crossing)

    items: list[dict[str, Any]] = local_client("dynamodb", aws_url).query(
        TableName=LEDGER_TABLE,
        KeyConditionExpression="#pk = :pk",
        ExpressionAttributeNames={"#pk": schema.PARTITION_KEY},
        ExpressionAttributeValues={":pk": {"S": schema.alert_pk("search-monthly", "team=search", MONTH.id)}},
    )["Items"]

    assert sorted(item[schema.SORT_KEY]["S"] for item in items) == ["AT#50@1000000000", "SENT#50@1000000000"]
