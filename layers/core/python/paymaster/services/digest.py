"""The daily digest: each team's yesterday, month to date and budgets, to its topic at
`alerts.digest_at` in `alerts.time_zone` (one schedule per team).

Sources, each exact or labelled (docs/SCHEDULES.md):
- yesterday — the team's local day — its spend, calls, top apps / models / users and denials by
  rule: the entries admitted in that day (`Entries.between`, one day's sort-key range of one or
  two UTC partitions): exact in the team's zone;
- each budget's spend vs its limit (and its block point when earlier): its counter for the
  current window (`CounterStore.counters`), exact, in the rule's own window and zone (a Los
  Angeles budget's month is Los Angeles');
- month to date: the ledger's rollup of the current UTC month, labelled "UTC month" — reading a
  whole month of entries every day to get the team's own month would cost thirty times the day's.

Once a day: a marker (`NOTICE#<team>#digest#-#-` / the day it covers) is put before sending, as
the forecast's, so that a retried schedule does not send a second digest; a refused notice
deletes it and fails the run, for the retry.
"""

from datetime import UTC, datetime, timedelta

from aws_lambda_powertools import Logger

from paymaster import schema
from paymaster.domain.errors import NoticeNotSentError
from paymaster.domain.ledger import Rollup
from paymaster.domain.notices import BudgetLine, digest_text
from paymaster.domain.policy import Policy
from paymaster.domain.reports import budget_buckets, tally, team_day
from paymaster.domain.windows import window
from paymaster.ports import CounterStore, Entries, Notice, Notifier, Reports, SpendLedger

logger = Logger(service="paymaster")

MARKER_LIFETIME = timedelta(days=3)


class Digest:
    def __init__(
        self,
        policy: Policy,
        *,
        entries: Entries,
        spend: SpendLedger,
        counters: CounterStore,
        reports: Reports,
        notifier: Notifier,
    ) -> None:
        self._policy = policy
        self._entries = entries
        self._spend = spend
        self._counters = counters
        self._reports = reports
        self._notifier = notifier

    def send(self, team: str, now: datetime) -> Notice | None:
        """Sends `team`'s digest of the day before `now` (in its zone); the notice, or None when
        that day's digest was already sent. Raises StoreUnavailableError (nothing sent) and
        NoticeNotSentError (the marker removed, for the retry); KeyError for an unknown team."""
        zone = self._policy.teams[team].alerts.zone
        day = now.astimezone(zone).date() - timedelta(days=1)
        span = team_day(zone, day)
        yesterday = tally(self._entries.between(team, span.start, span.end))
        utc_month = now.astimezone(UTC).strftime("%Y-%m")
        month_to_date = self._spend.rollup(Rollup(team, utc_month))
        text = digest_text(
            team,
            zone,
            day,
            yesterday=yesterday,
            month_to_date=month_to_date,
            utc_month=utc_month,
            budgets=self._budgets(team, now),
            now=now,
        )
        notice = Notice(text.subject, text.text)
        marker = schema.notice_pk(team, schema.NOTICE_KIND_DIGEST, "-", "-")
        if not self._reports.claim_notice(marker, day.isoformat(), now + MARKER_LIFETIME):
            logger.info("digest already sent", extra={"team": team, "day": day.isoformat()})
            return None
        try:
            self._notifier.notify(team, notice)
        except NoticeNotSentError:
            self._reports.release_notice(marker, day.isoformat())
            raise
        logger.info("digest sent", extra={"team": team, "day": day.isoformat()})
        return notice

    def _budgets(self, team: str, now: datetime) -> list[BudgetLine]:
        buckets = budget_buckets(self._policy, team)
        windows = [window(found.rule.period, found.rule.zone, now) for found in buckets]
        keys = [
            (schema.counter_pk(found.rule.name, found.bucket), current.id)
            for found, current in zip(buckets, windows, strict=True)
        ]
        states = self._counters.counters(keys) if keys else {}
        return [
            BudgetLine(found.rule, found.bucket, current, states[key].spent if key in states else 0)
            for found, current, key in zip(buckets, windows, keys, strict=True)
        ]
