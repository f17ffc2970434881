"""Budget alarms, exactly once per threshold per window (docs/ALARMS.md): the ledger function's
`ThresholdWatch` finds crossings on the counters' stream, the budget-alarm function's
`BudgetAlarms` emails each one to its team.

**Crossing.** A counter's stream record shows `spent` before and after a settlement; each
threshold (a percentage at an amount, so a cap changed mid-window has its own) is crossed by
exactly one write while the limit stays, and one the spend had already passed when the cap was
lowered is taken by the next write. For each, a conditional marker naming the stream record
(`AlarmMarks.cross`) decides which record publishes the BudgetThresholdCrossed: the one that put
it, on every delivery of that record (the stream redelivers a batch whose events did not all go
out: at least once); no other record.

**Email.** Per BudgetThresholdCrossed: claim its email (`AlarmMarks.claim`, a lease), send it,
mark it sent. A duplicated event or a redelivered message finds the claim or the mark and sends
nothing; a send that fails releases the claim and raises, so the message is delivered again and,
after `names.ALARM_MAX_RECEIVES`, rests on the dead-letter queue (a send whose answer was lost
is one of these: sent again, at least once). A mark that fails after the send is logged at error
and the message is done: SNS took the email. Send-then-mark: the duplicates left are a function
that dies after the send and before the mark, and a mark that failed followed by a copy of the
event after the claim's lease.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum

from aws_lambda_powertools import Logger

from paymaster.domain.alarms import SpendChange, TeamSpend, alarm_projection, alarm_subject, alarm_text, crossings
from paymaster.domain.errors import StoreUnavailableError
from paymaster.domain.events import BudgetThresholdCrossed
from paymaster.domain.policy import Policy, Rule
from paymaster.ports import AlarmMarks, Notice, Notifier, SpendLedger

logger = Logger(service="paymaster")

# Longer than the budget-alarm function may run (infra: 30 s), so that a live sender is never
# doubled; shorter than the queue's visibility timeout, so that a message whose sender died is
# sent by its next delivery.
CLAIM_LEASE_S = 60
# Markers a ledger container remembers (about 200 bytes each): buckets × thresholds of the
# windows it sees; past this it starts again.
KNOWN_MARKERS_MAX = 50_000


class ThresholdWatch:
    """The ledger function's half: which crossings a counter's change publishes.

    Every threshold the new spend has reached is a candidate (`domain.alarms.crossings`); its
    marker decides. One this change crossed goes straight to the conditional put. One reached
    earlier is, almost always, a marker an earlier record wrote: the watch remembers, per
    container, the markers it has read or written (they never change owner), reads one only the
    first time it meets it, and puts only when none is there — a cap lowered below the spend.
    """

    def __init__(self, policy: Policy, marks: AlarmMarks) -> None:
        self._rules = {rule.name: rule for rule in policy.rules}
        self._marks = marks
        self._known: dict[str, str] = {}  # crossing id → the record its marker names

    def crossings(self, change: SpendChange, record_id: str, written_at: datetime) -> list[BudgetThresholdCrossed]:
        """The BudgetThresholdCrossed this record publishes: each threshold it reached whose
        marker names it (written now, or on an earlier delivery of it). Raises
        StoreUnavailableError when a marker cannot be read or written now (the record fails and
        comes again; the markers it did write name it, so it publishes those)."""
        rule = self._rules.get(change.rule)
        if rule is None:
            # A counter of a rule the deployed policy no longer has: nobody to tell, nothing to cap.
            logger.info("spend on a rule the policy no longer names", extra={"rule": change.rule})
            return []
        published = []
        for crossing in crossings(rule, change, written_at):
            crossed_here = change.crosses(crossing.threshold)
            owner = self._known.get(crossing.crossing_id)
            if owner is None and not crossed_here:
                owner = self._marks.crossed_by(crossing)
                if owner is not None:
                    self._remember(crossing.crossing_id, owner)
            if owner is not None and owner != record_id:
                if crossed_here:
                    logger.info(
                        "threshold already crossed by another record", extra={"crossing_id": crossing.crossing_id}
                    )
                continue
            if self._marks.cross(crossing, record_id):
                self._remember(crossing.crossing_id, record_id)
                published.append(crossing)
            else:
                # Not remembered: which record it names is not known here, and that record, if
                # it comes again, must publish.
                logger.info("threshold already crossed by another record", extra={"crossing_id": crossing.crossing_id})
        return published

    def _remember(self, crossing_id: str, record_id: str) -> None:
        if len(self._known) >= KNOWN_MARKERS_MAX:
            self._known.clear()  # forgetting costs one read per marker met again, nothing else
        self._known[crossing_id] = record_id


class Delivery(StrEnum):
    SENT = "sent"
    ALREADY_SENT = "already_sent"  # or being sent by another delivery right now
    NO_TEAM = "no_team"  # a budget no single team owns: nobody's topic
    UNKNOWN_RULE = "unknown_rule"


class BudgetAlarms:
    """The budget-alarm function's use case: one email per crossing."""

    def __init__(
        self,
        policy: Policy,
        marks: AlarmMarks,
        notifier: Notifier,
        spend: SpendLedger,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._rules = {rule.name: rule for rule in policy.rules}
        self._marks = marks
        self._notifier = notifier
        self._spend = spend
        self._clock = clock

    def deliver(self, crossing: BudgetThresholdCrossed) -> Delivery:
        """Emails the crossing to its team once. Raises NoticeNotSentError (the topic did not take
        it) or StoreUnavailableError (no marker, or no rollups to write it from): the message is
        delivered again."""
        extra = {"crossing_id": crossing.crossing_id, "team": crossing.team}
        if crossing.team is None:
            # Issue 11 brings an ops topic for these; until then the event on the bus is all there is.
            logger.warning("a budget no single team owns crossed a threshold: no email", extra=extra)
            return Delivery.NO_TEAM
        rule = self._rules.get(crossing.rule)
        if rule is None:
            logger.warning("a crossing of a rule the policy no longer names: no email", extra=extra)
            return Delivery.UNKNOWN_RULE
        now = self._clock()
        notice = self.notice(crossing, rule, now)  # before the claim: a ledger failure claims nothing
        if not self._marks.claim(crossing, now, CLAIM_LEASE_S):
            logger.info("budget alarm already sent (or being sent)", extra=extra)
            return Delivery.ALREADY_SENT
        try:
            self._notifier.notify(crossing.team, notice)
        except Exception:
            self._marks.release(crossing)
            raise
        try:
            self._marks.sent(crossing)
        except StoreUnavailableError as error:
            # SNS took it: failing the message would email it again once the lease runs out.
            logger.error(
                "budget alarm sent, and not marked sent: a copy of its event after the lease would send it again",
                extra=extra | {"error": error.message},
            )
            return Delivery.SENT
        logger.info("budget alarm sent", extra=extra)
        return Delivery.SENT

    def notice(self, crossing: BudgetThresholdCrossed, rule: Rule, now: datetime) -> Notice:
        """The email: the crossing's figures and projection (`alarm_projection`), the live
        rule's downgrades, and the team's top apps and models of the ledger's current UTC month."""
        assert crossing.team is not None
        projection = alarm_projection(crossing, now)
        month = now.astimezone(UTC).strftime("%Y-%m")
        spend = TeamSpend(
            month=month,
            apps=self._spend.breakdown(crossing.team, month, "app"),
            models=self._spend.breakdown(crossing.team, month, "model"),
        )
        return Notice(alarm_subject(crossing), alarm_text(crossing, rule, projection, spend, now))
