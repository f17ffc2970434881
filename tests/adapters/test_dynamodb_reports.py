"""The scheduled jobs' reads and writes of the ledger table, on the stand-in: a team's entries by
admission time across UTC partitions, month reports and notice markers put once."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.adapters.dynamodb_reports import DynamoDBReports
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.domain.events import MonthClosed
from paymaster.domain.reports import team_month
from paymaster_local.resources import LEDGER_TABLE
from tests.ledger_entries import ENTRY, fresh_ledger
from tests.unit.test_event_contracts import sample

REPORT = MonthClosed.model_validate(sample("month-closed.json")["detail"])


@pytest.fixture
def ledger(dynamodb: DynamoDBWire, aws_url: str) -> DynamoDBLedger:
    return fresh_ledger(aws_url, dynamodb)


@pytest.fixture
def reports(ledger: DynamoDBLedger, dynamodb: DynamoDBWire) -> DynamoDBReports:
    return DynamoDBReports(dynamodb, LEDGER_TABLE)


def test_a_los_angeles_month_reads_both_utc_partitions_from_its_first_to_its_last_local_instant(
    ledger: DynamoDBLedger,
) -> None:
    times = {
        "before": datetime(2026, 11, 1, 6, 59, 59, 999_000, tzinfo=UTC),
        "first": datetime(2026, 11, 1, 7, tzinfo=UTC),
        "late": datetime(2026, 12, 1, 7, 30, tzinfo=UTC),  # 23:30 on 30 November in Los Angeles
        "after": datetime(2026, 12, 1, 8, tzinfo=UTC),
        "other-team": datetime(2026, 11, 2, tzinfo=UTC),
    }
    for request_id, moment in times.items():
        team = "support" if request_id == "other-team" else "search"
        ledger.record(replace(ENTRY, request_id=request_id, admitted_at=moment, team=team))
    november = team_month("2026-11", ZoneInfo("America/Los_Angeles"))

    found = [entry.request_id for entry in ledger.between("search", november.start, november.end)]

    assert found == ["first", "late"]


def test_a_report_is_put_once_and_read_back_unpublished_until_marked(reports: DynamoDBReports) -> None:
    assert reports.report("search", "2026-11") is None

    assert reports.put_report(REPORT) is True
    assert reports.put_report(REPORT.model_copy(update={"rows_left_out": 9})) is False

    stored = reports.report("search", "2026-11")
    assert stored is not None
    assert (stored.report, stored.published) == (REPORT, False)
    reports.mark_published("search", "2026-11")
    stored = reports.report("search", "2026-11")
    assert stored is not None
    assert stored.published


def test_a_notice_is_claimed_once_a_day_and_a_released_claim_can_be_made_again(reports: DynamoDBReports) -> None:
    expires = datetime(2026, 11, 25, tzinfo=UTC) + timedelta(days=3)

    assert reports.claim_notice("NOTICE#search#forecast#m#team=search", "2026-11-25", expires) is True
    assert reports.claim_notice("NOTICE#search#forecast#m#team=search", "2026-11-25", expires) is False
    assert reports.claim_notice("NOTICE#search#forecast#m#team=search", "2026-11-26", expires) is True

    reports.release_notice("NOTICE#search#forecast#m#team=search", "2026-11-25")
    assert reports.claim_notice("NOTICE#search#forecast#m#team=search", "2026-11-25", expires) is True


def test_the_team_s_unpublished_reports_are_listed_oldest_first_and_a_published_one_is_not(
    reports: DynamoDBReports,
) -> None:
    for month in ("2026-11", "2026-09", "2026-10"):
        reports.put_report(REPORT.model_copy(update={"month": month}))
    reports.put_report(REPORT.model_copy(update={"team": "support"}))
    reports.mark_published("search", "2026-10")

    found = reports.unpublished("search")

    assert [(stored.report.team, stored.report.month, stored.published) for stored in found] == [
        ("search", "2026-09", False),
        ("search", "2026-11", False),
    ]


class LostAnswers:
    """A DynamoDB client whose PutItems are each applied twice, as when the first answer was lost
    and the wire sent the same request again: the caller gets the second answer."""

    def __init__(self, client: DynamoDBWire) -> None:
        self._client = client

    def put_item(self, **request: Any) -> dict[str, Any]:
        self._client.put_item(**request)
        answer: dict[str, Any] = self._client.put_item(**request)
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_notice_claim_whose_answer_was_lost_and_resent_is_still_this_claim_and_another_is_not(
    ledger: DynamoDBLedger, dynamodb: DynamoDBWire
) -> None:
    resending = DynamoDBReports(LostAnswers(dynamodb), LEDGER_TABLE)
    expires = datetime(2026, 11, 25, tzinfo=UTC) + timedelta(days=3)
    marker = "NOTICE#search#digest#-#-"

    assert resending.claim_notice(marker, "2026-11-24", expires) is True
    assert DynamoDBReports(dynamodb, LEDGER_TABLE).claim_notice(marker, "2026-11-24", expires) is False
    assert resending.claim_notice(marker, "2026-11-24", expires) is False
