"""Budget alarms on the in-memory adapters: each threshold of a window fires once however the
settlements race and the stream redelivers, and emails once however often its event comes."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymaster.adapters.memory import MemoryAlarmMarks, MemoryLedger
from paymaster.domain.alarms import SpendChange
from paymaster.domain.errors import NoticeNotSentError, StoreUnavailableError
from paymaster.domain.events import BudgetThresholdCrossed
from paymaster.domain.policy import Policy
from paymaster.domain.windows import window
from paymaster.ports import Notice
from paymaster.services.alarms import CLAIM_LEASE_S, BudgetAlarms, Delivery, ThresholdWatch
from tests.policies import policy_with

LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2026, 12, 19, 17, 42, tzinfo=UTC)
MONTHLY = {
    "name": "search-monthly",
    "when": {"team": "search"},
    "limit": 2000,
    "unit": "cost_per_month",
    "per": ["team"],
    "time_zone": "America/Los_Angeles",
}
SHARED = {"name": "shared-monthly", "limit": 100, "unit": "cost_per_month"}


class RecordingNotifier:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, Notice]] = []
        self.fail = fail
        self._lock = threading.Lock()

    def notify(self, team: str, notice: Notice) -> None:
        if self.fail:
            raise NoticeNotSentError("the topic is gone (scripted)")
        with self._lock:
            self.sent.append((team, notice))


@pytest.fixture
def policy() -> Policy:
    return policy_with([MONTHLY, SHARED])


@pytest.fixture
def marks() -> MemoryAlarmMarks:
    return MemoryAlarmMarks()


def usd(dollars: int) -> int:
    return dollars * 1_000_000


def change(
    old: int, new: int, now: datetime = NOW, rule: str = "search-monthly", bucket: str = "team=search"
) -> SpendChange:
    month = window("month", LA, now)
    return SpendChange(rule, bucket, month.id, month.end, old, new)


def test_50_racing_settlements_past_80_percent_publish_one_80_and_one_50_and_email_each_once(
    policy: Policy, marks: MemoryAlarmMarks
) -> None:
    """Each settlement is one atomic ADD on the counter; its stream record shows that write's old
    and new spend. 50 of $33 take $0 to $1,650."""
    watch = ThresholdWatch(policy, marks)
    notifier = RecordingNotifier()
    alarms = BudgetAlarms(policy, marks, notifier, MemoryLedger(), clock=lambda: NOW)
    counter = {"spent": 0}
    lock = threading.Lock()

    def settle(index: int) -> list[BudgetThresholdCrossed]:
        with lock:  # DynamoDB's per-item atomicity
            old = counter["spent"]
            counter["spent"] = new = old + usd(33)
        published = watch.crossings(change(old, new), f"record-{index}", NOW)
        for crossing in published:
            alarms.deliver(crossing)
        return published

    with ThreadPoolExecutor(max_workers=16) as pool:
        published = [crossing for batch in pool.map(settle, range(50)) for crossing in batch]

    assert sorted(crossing.threshold_pct for crossing in published) == [50, 80]
    assert sorted(notice.subject for _, notice in notifier.sent) == [
        "[paymaster] search: search-monthly reached 50 % ($1,023.00 of $2,000.00)",
        "[paymaster] search: search-monthly reached 80 % ($1,617.00 of $2,000.00)",
    ]


def test_a_redelivered_record_publishes_its_crossing_again_and_no_second_email(
    policy: Policy, marks: MemoryAlarmMarks
) -> None:
    watch = ThresholdWatch(policy, marks)
    notifier = RecordingNotifier()
    alarms = BudgetAlarms(policy, marks, notifier, MemoryLedger(), clock=lambda: NOW)

    first = watch.crossings(change(usd(990), usd(1010)), "record-7", NOW)
    again = watch.crossings(change(usd(990), usd(1010)), "record-7", NOW)
    deliveries = [alarms.deliver(crossing) for crossing in [*first, *again]]

    assert first == again
    assert [crossing.threshold_pct for crossing in first] == [50]
    assert deliveries == [Delivery.SENT, Delivery.ALREADY_SENT]
    assert len(notifier.sent) == 1


def test_another_record_finding_the_marker_publishes_nothing(policy: Policy, marks: MemoryAlarmMarks) -> None:
    """Two records cannot both cross one threshold while spend only grows; a stream replayed from
    another shard's copy (or a hand replay) could bring one, and it stays silent."""
    watch = ThresholdWatch(policy, marks)

    assert watch.crossings(change(usd(990), usd(1010)), "record-7", NOW)
    assert watch.crossings(change(usd(990), usd(1010)), "record-8", NOW) == []


def test_the_same_threshold_in_the_next_window_fires_again(policy: Policy, marks: MemoryAlarmMarks) -> None:
    watch = ThresholdWatch(policy, marks)
    notifier = RecordingNotifier()
    january = datetime(2027, 1, 5, tzinfo=UTC)
    alarms = BudgetAlarms(policy, marks, notifier, MemoryLedger(), clock=lambda: january)

    december = watch.crossings(change(usd(990), usd(1010)), "record-1", NOW)
    next_month = watch.crossings(change(usd(990), usd(1010), now=january), "record-2", january)
    for crossing in [*december, *next_month]:
        alarms.deliver(crossing)

    assert [crossing.crossing_id for crossing in [*december, *next_month]] == [
        "search-monthly#team=search#2026-12#50@1000000000",
        "search-monthly#team=search#2027-01#50@1000000000",
    ]
    assert len(notifier.sent) == 2


def test_a_cap_raised_mid_window_fires_its_thresholds_again_at_the_new_amounts(marks: MemoryAlarmMarks) -> None:
    """$2,000 → $4,000 with $1,700 spent: 50 % is now $2,000, not the $1,000 that already fired."""
    before = ThresholdWatch(policy_with([MONTHLY]), marks)
    after = ThresholdWatch(policy_with([MONTHLY | {"limit": 4000}]), marks)

    fired_at_1000 = before.crossings(change(usd(990), usd(1010)), "record-1", NOW)
    quiet = after.crossings(change(usd(1010), usd(1700)), "record-2", NOW)
    fired_at_2000 = after.crossings(change(usd(1700), usd(2050)), "record-3", NOW)

    assert [c.crossing_id for c in fired_at_1000] == ["search-monthly#team=search#2026-12#50@1000000000"]
    assert quiet == []
    assert [(c.crossing_id, c.limit) for c in fired_at_2000] == [
        ("search-monthly#team=search#2026-12#50@2000000000", usd(4000))
    ]


def test_a_cap_lowered_below_the_spend_fires_every_threshold_it_left_behind_on_the_next_change_once(
    marks: MemoryAlarmMarks,
) -> None:
    """$2,000 → $1,000 with $1,500 spent: no change will ever cross 80 % or 100 % of $1,000, so
    the next one is their crossing — once."""
    before = ThresholdWatch(policy_with([MONTHLY]), marks)
    after = ThresholdWatch(policy_with([MONTHLY | {"limit": 1000}]), marks)
    notifier = RecordingNotifier()
    alarms = BudgetAlarms(policy_with([MONTHLY | {"limit": 1000}]), marks, notifier, MemoryLedger(), clock=lambda: NOW)

    assert [c.threshold_pct for c in before.crossings(change(0, usd(1500)), "record-1", NOW)] == [50]
    next_change = after.crossings(change(usd(1500), usd(1510)), "record-2", NOW)
    later = after.crossings(change(usd(1510), usd(1520)), "record-3", NOW)
    for crossing in next_change:
        alarms.deliver(crossing)

    assert [(c.threshold_pct, c.threshold, c.spent) for c in next_change] == [
        (50, usd(500), usd(1510)),
        (80, usd(800), usd(1510)),
        (100, usd(1000), usd(1510)),
    ]
    assert later == []
    assert len(notifier.sent) == 3


def test_spend_past_a_threshold_reads_its_marker_once_per_container_and_not_on_every_settlement(
    policy: Policy, marks: MemoryAlarmMarks
) -> None:
    warm = ThresholdWatch(policy, marks)
    assert warm.crossings(change(usd(990), usd(1010)), "record-1", NOW)  # crossed: a put, no read
    for index in range(20):
        assert warm.crossings(change(usd(1010 + index), usd(1011 + index)), f"record-{index + 2}", NOW) == []
    reads_when_warm = marks.reads

    cold = ThresholdWatch(policy, marks)  # a new container
    for index in range(20):
        assert cold.crossings(change(usd(1100 + index), usd(1101 + index)), f"record-{index + 30}", NOW) == []

    assert (reads_when_warm, marks.reads) == (0, 1)


def test_the_record_that_took_a_threshold_it_did_not_cross_publishes_it_again_when_redelivered(
    marks: MemoryAlarmMarks,
) -> None:
    """Its PutEvents failed: the stream delivers it again, to the same container."""
    after = ThresholdWatch(policy_with([MONTHLY | {"limit": 1000}]), marks)

    first = after.crossings(change(usd(1500), usd(1510)), "record-2", NOW)
    again = after.crossings(change(usd(1500), usd(1510)), "record-2", NOW)

    assert first == again
    assert len(first) == 3


@given(
    st.lists(st.integers(min_value=0, max_value=300_000_000), min_size=1, max_size=40),
    st.lists(st.sampled_from([500, 1000, 2000, 4000]), min_size=1, max_size=4),
    st.data(),
)
def test_any_increments_and_cap_changes_publish_each_threshold_amount_reached_once(
    increments: list[int], limits: list[int], data: st.DataObject
) -> None:
    """Whatever caps the policy goes through (each a new container), every threshold reached at
    the cap in force is published by exactly one record, and none that was never reached."""
    marks = MemoryAlarmMarks()
    watches = [ThresholdWatch(policy_with([MONTHLY | {"limit": limit}]), marks) for limit in limits]
    spent = 0
    published: list[str] = []
    owed: set[str] = set()
    for index, increment in enumerate(increments):
        watch_index = data.draw(st.integers(min_value=0, max_value=len(limits) - 1))
        if increment == 0:
            continue  # a write that leaves `spent` as it was is no SpendChange (`spend_change`)
        old, spent = spent, spent + increment
        crossings = watches[watch_index].crossings(change(old, spent), f"record-{index}", NOW)
        published.extend(crossing.crossing_id for crossing in crossings)
        limit = usd(limits[watch_index])
        owed |= {
            f"search-monthly#team=search#2026-12#{at}@{-(-limit * at // 100)}"
            for at in (50, 80, 100)
            if spent * 100 >= limit * at
        }

    assert sorted(published) == sorted(owed)


def test_the_email_takes_every_figure_from_the_crossing_and_says_in_one_line_that_the_policy_changed_since(
    marks: MemoryAlarmMarks,
) -> None:
    """Crossed 80 % of $2,000 (downgrading at 80 %); the live rule has since been raised to $4,000."""
    downgrade = {"actions": [{"at": 80, "alert": True}, {"at": 80, "downgrade_to": "nova-lite"}]}
    crossed_under = policy_with([MONTHLY | downgrade])
    live = policy_with([MONTHLY | downgrade | {"limit": 4000}])
    [crossing] = ThresholdWatch(crossed_under, marks).crossings(change(usd(1590), usd(1612)), "record-1", NOW)
    notifier = RecordingNotifier()

    BudgetAlarms(live, marks, notifier, MemoryLedger(), clock=lambda: NOW).deliver(crossing)

    [(_, notice)] = notifier.sent
    assert notice.subject == "[paymaster] search: search-monthly reached 80 % ($1,612.00 of $2,000.00)"
    for line in (
        "The policy has changed since: limit $2,000.00 → $4,000.00.",
        "Cap:        $2,000.00",
        "Used:       80.6 %",
        "the cap is reached around Wed 23 Dec 2026",  # $2,000 at the crossing's rate, not $4,000
        "at 80 % (now): requests are downgraded to nova-lite",
    ):
        assert line in notice.text, line
    assert notice.text.count("changed since") == 1


def test_an_email_whose_policy_has_not_changed_says_nothing_of_it(policy: Policy, marks: MemoryAlarmMarks) -> None:
    [crossing] = ThresholdWatch(policy, marks).crossings(change(usd(990), usd(1010)), "record-1", NOW)
    notifier = RecordingNotifier()

    BudgetAlarms(policy, marks, notifier, MemoryLedger(), clock=lambda: NOW).deliver(crossing)

    [(_, notice)] = notifier.sent
    assert "changed since" not in notice.text


def test_a_send_that_fails_releases_its_claim_so_that_the_next_delivery_sends_it(
    policy: Policy, marks: MemoryAlarmMarks
) -> None:
    [crossing] = ThresholdWatch(policy, marks).crossings(change(usd(990), usd(1010)), "record-1", NOW)
    failing = RecordingNotifier(fail=True)

    with pytest.raises(NoticeNotSentError):
        BudgetAlarms(policy, marks, failing, MemoryLedger(), clock=lambda: NOW).deliver(crossing)
    working = RecordingNotifier()
    delivered = BudgetAlarms(policy, marks, working, MemoryLedger(), clock=lambda: NOW).deliver(crossing)

    assert delivered == Delivery.SENT
    assert len(working.sent) == 1


class MarksThatCannotMarkSent(MemoryAlarmMarks):
    def sent(self, crossing: BudgetThresholdCrossed) -> None:
        raise StoreUnavailableError("the ledger is unreachable (scripted)")


def test_a_mark_that_fails_after_the_send_is_logged_and_the_delivery_is_done_not_retried(
    policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    """SNS took the email: failing the message would send it again after the lease."""
    marks = MarksThatCannotMarkSent()
    [crossing] = ThresholdWatch(policy, marks).crossings(change(usd(990), usd(1010)), "record-1", NOW)
    notifier = RecordingNotifier()

    delivered = BudgetAlarms(policy, marks, notifier, MemoryLedger(), clock=lambda: NOW).deliver(crossing)

    assert delivered == Delivery.SENT
    assert len(notifier.sent) == 1
    [error] = [record for record in caplog.records if record.levelname == "ERROR"]
    assert error.crossing_id == crossing.crossing_id  # type: ignore[attr-defined]
    assert "sent" in error.getMessage()


def test_a_sender_that_died_holding_its_claim_is_replaced_once_its_lease_is_over(
    policy: Policy, marks: MemoryAlarmMarks
) -> None:
    [crossing] = ThresholdWatch(policy, marks).crossings(change(usd(990), usd(1010)), "record-1", NOW)
    assert marks.claim(crossing, NOW, CLAIM_LEASE_S)  # and then the function died
    notifier = RecordingNotifier()

    during = BudgetAlarms(policy, marks, notifier, MemoryLedger(), clock=lambda: NOW + timedelta(seconds=30))
    after = BudgetAlarms(policy, marks, notifier, MemoryLedger(), clock=lambda: NOW + timedelta(seconds=61))

    assert during.deliver(crossing) == Delivery.ALREADY_SENT
    assert after.deliver(crossing) == Delivery.SENT
    assert len(notifier.sent) == 1


def test_a_ledger_that_cannot_be_read_claims_nothing_and_fails_the_delivery(
    policy: Policy, marks: MemoryAlarmMarks
) -> None:
    [crossing] = ThresholdWatch(policy, marks).crossings(change(usd(990), usd(1010)), "record-1", NOW)
    ledger = MemoryLedger()
    ledger.unavailable = True

    with pytest.raises(StoreUnavailableError):
        BudgetAlarms(policy, marks, RecordingNotifier(), ledger, clock=lambda: NOW).deliver(crossing)

    assert marks.notices == {}


def test_a_budget_no_single_team_owns_publishes_its_crossing_without_a_team_and_emails_nobody(
    policy: Policy, marks: MemoryAlarmMarks
) -> None:
    notifier = RecordingNotifier()
    [crossing] = ThresholdWatch(policy, marks).crossings(
        change(0, usd(60), rule="shared-monthly", bucket="*"), "record-1", NOW
    )

    delivered = BudgetAlarms(policy, marks, notifier, MemoryLedger(), clock=lambda: NOW).deliver(crossing)

    assert crossing.team is None
    assert crossing.threshold_pct == 50
    assert delivered == Delivery.NO_TEAM
    assert notifier.sent == []


def test_a_counter_of_a_rule_the_policy_no_longer_names_publishes_nothing(
    policy: Policy, marks: MemoryAlarmMarks
) -> None:
    assert ThresholdWatch(policy, marks).crossings(change(0, usd(5000), rule="gone"), "record-1", NOW) == []
