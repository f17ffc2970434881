"""The daily digest on a controlled clock, across a month boundary in Los Angeles (search's zone):
yesterday is the team's local day, exact from its entries; budgets from their counters."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from paymaster import schema
from paymaster.adapters.memory import MemoryLedger, MemoryReports
from paymaster.domain.errors import NoticeNotSentError
from paymaster.services.digest import Digest
from tests.ledger_entries import DENIAL, ENTRY
from tests.notifiers import RecordingNotifier, RefusingNotifier
from tests.policies import policy_with
from tests.services.test_month_close import MONTHLY, Counters

# 09:00 on 1 December in Los Angeles (search's digest_at): the digest covers 30 November there.
DIGEST_AT = datetime(2026, 12, 1, 17, tzinfo=UTC)
POLICY = policy_with([MONTHLY])


@pytest.fixture
def ledger() -> MemoryLedger:
    ledger = MemoryLedger()
    entries = [
        replace(ENTRY, request_id="29th", admitted_at=datetime(2026, 11, 30, 7, 59, tzinfo=UTC), cost=5_000),
        replace(ENTRY, request_id="30th", admitted_at=datetime(2026, 11, 30, 8, 0, tzinfo=UTC), cost=1_500_000),
        # 23:30 on 30 November in Los Angeles, 07:30 on 1 December UTC: still yesterday for search.
        replace(
            ENTRY, request_id="late", admitted_at=datetime(2026, 12, 1, 7, 30, tzinfo=UTC), cost=250_000, app="indexer"
        ),
        replace(DENIAL, admitted_at=datetime(2026, 11, 30, 20, tzinfo=UTC)),
        replace(ENTRY, request_id="today", admitted_at=datetime(2026, 12, 1, 8, 0, tzinfo=UTC), cost=9_000_000),
    ]
    for entry in entries:
        ledger.record(entry)
    return ledger


def digest(ledger: MemoryLedger, reports: MemoryReports, notifier: object) -> Digest:
    counters = Counters({(schema.counter_pk("search-monthly", "team=search"), "2026-12"): 9_000_000})
    return Digest(POLICY, entries=ledger, spend=ledger, counters=counters, reports=reports, notifier=notifier)  # type: ignore[arg-type]


def test_the_digest_covers_the_team_s_local_yesterday_across_the_utc_month_boundary(ledger: MemoryLedger) -> None:
    notifier = RecordingNotifier()

    notice = digest(ledger, MemoryReports(), notifier).send("search", DIGEST_AT)

    assert notice is not None
    assert notifier.sent == [("search", notice)]
    assert notice.subject == "[paymaster] search daily digest 2026-11-30: $1.75"
    text = notice.text
    assert "Team search, 2026-11-30 (America/Los_Angeles): $1.75 in 2 calls, 1 refused." in text
    assert "  ranker: $1.5 in 1 calls" in text
    assert "  indexer: $0.25 in 1 calls" in text
    assert "  search-monthly: 1" in text
    # The budget's month is Los Angeles' December, from its counter; the UTC month from the rollup.
    assert "search-monthly (team=search, 2026-12): $9 of $2000 (0 %), resets 2027-01-01T00:00-08:00" in text
    assert "UTC month 2026-12 to date (the ledger's rollup): $9.25 in 2 calls." in text


def test_a_budget_s_share_is_of_its_limit_as_its_alarms_count_it_and_an_earlier_block_is_named(
    ledger: MemoryLedger,
) -> None:
    blocking = MONTHLY | {"actions": [{"at": 80, "alert": True}, {"at": 90, "block": True}]}
    counters = Counters({(schema.counter_pk("search-monthly", "team=search"), "2026-12"): 1_700_000_000})
    notifier = RecordingNotifier()
    service = Digest(
        policy_with([blocking]),
        entries=ledger,
        spend=ledger,
        counters=counters,  # type: ignore[arg-type]
        reports=MemoryReports(),
        notifier=notifier,
    )

    notice = service.send("search", DIGEST_AT)

    assert notice is not None
    assert (
        "search-monthly (team=search, 2026-12): $1700 of $2000 (85 %, blocks at $1800), resets 2027-01-01T00:00-08:00"
        in notice.text
    )


def test_a_digest_is_sent_once_per_day_however_often_its_schedule_runs(ledger: MemoryLedger) -> None:
    reports, notifier = MemoryReports(), RecordingNotifier()

    assert digest(ledger, reports, notifier).send("search", DIGEST_AT) is not None
    assert digest(ledger, reports, notifier).send("search", DIGEST_AT) is None

    assert len(notifier.sent) == 1


def test_a_digest_the_topic_refused_fails_and_its_retry_sends_it(ledger: MemoryLedger) -> None:
    reports = MemoryReports()

    with pytest.raises(NoticeNotSentError):
        digest(ledger, reports, RefusingNotifier()).send("search", DIGEST_AT)

    assert digest(ledger, reports, RecordingNotifier()).send("search", DIGEST_AT) is not None
