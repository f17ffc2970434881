"""The daily forecast: for each budget bucket the policy can name, project its window-end spend
(`domain.forecast.project`) and, when the projection passes the cap, warn the bucket's teams —
at most once a day per budget and team, naming the date the cap will be reached.

Sources (docs/SCHEDULES.md): the spend so far is the bucket's counter for the current window
(`CounterStore.counters`, read only). The burn rate is the last 7 complete UTC days of the
team's day rollups (`SpendLedger.rollup`) when the bucket counts exactly the team's cost (a cost
rule with `when` naming at most the team and `per` at most `[team]`): those rollups are then
that bucket's own days. Any other bucket (an app's, a model's, a token budget) has no day
figures of its own, and the rate is the window's mean so far.

Each bucket that is one team's whole budget (`per` at most `[team]`) also leaves its projection
as a metric (`ports.ProjectionMetrics`: `names.METRIC_PROJECTED_SPEND` by team and rule), warned
or not: the forecast line on the team's dashboard.

Once a day: a marker (`NOTICE#<team>#forecast#<rule>#<bucket>` / the team's local date, TTL)
is put conditionally BEFORE the notice is sent. A second run that day finds it and sends nothing.
A notice the topic refuses (NoticeNotSentError) deletes its marker and fails the run, so the
schedule's retry sends it. A crash between the marker and the send loses that day's warning
(the next day's run warns again): at most once, never twice.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aws_lambda_powertools import Logger

from paymaster import schema
from paymaster.domain.errors import NoticeNotSentError
from paymaster.domain.forecast import RECENT_DAYS, project
from paymaster.domain.ledger import Rollup
from paymaster.domain.notices import forecast_text
from paymaster.domain.policy import Policy, Rule
from paymaster.domain.reports import BudgetBucket, budget_buckets
from paymaster.domain.windows import Window, window
from paymaster.ports import CounterStore, Notice, Notifier, ProjectionMetrics, Reports, SpendLedger

logger = Logger(service="paymaster")

# A marker outlives its day by this much (TTL deletes it eventually; nothing reads an old one).
MARKER_LIFETIME = timedelta(days=3)


@dataclass(frozen=True, slots=True)
class Warned:
    team: str
    rule: str
    bucket: str
    cap_reached_at: datetime | None


class Forecast:
    def __init__(
        self,
        policy: Policy,
        counters: CounterStore,
        spend: SpendLedger,
        reports: Reports,
        notifier: Notifier,
        *,
        metrics: ProjectionMetrics | None = None,
    ) -> None:
        self._policy = policy
        self._counters = counters
        self._spend = spend
        self._reports = reports
        self._notifier = notifier
        self._metrics = metrics

    def run(self, now: datetime) -> list[Warned]:
        """Projects every bucket and warns where the cap will be passed; the warnings sent.

        Raises StoreUnavailableError when the counters or the ledger cannot be read, and
        NoticeNotSentError (after trying every notice) when a topic refused one.
        """
        buckets = budget_buckets(self._policy)
        keys = [
            (schema.counter_pk(found.rule.name, found.bucket), self._window(found.rule, now).id) for found in buckets
        ]
        states = self._counters.counters(keys) if keys else {}
        warned: list[Warned] = []
        refused: list[NoticeNotSentError] = []
        for found, key in zip(buckets, keys, strict=True):
            rule = found.rule
            state = states.get(key)
            spent = 0 if state is None else state.spent
            current = self._window(rule, now)
            projection = project(spent, rule.cap, current, now, self._recent_days(found, now))
            if self._metrics is not None and _one_teams(found):
                self._metrics.emit(found.teams[0], rule.name, projection.at_end, now)
            if not projection.exceeds(rule.cap):
                continue
            text = forecast_text(", ".join(found.teams), rule, found.bucket, current, projection)
            for team in found.teams:
                marker = schema.notice_pk(team, schema.NOTICE_KIND_FORECAST, rule.name, found.bucket)
                day = now.astimezone(self._policy.teams[team].alerts.zone).date().isoformat()
                if not self._reports.claim_notice(marker, day, now + MARKER_LIFETIME):
                    continue
                try:
                    self._notifier.notify(team, Notice(text.subject, text.text))
                except NoticeNotSentError as error:
                    self._reports.release_notice(marker, day)
                    logger.warning("forecast not sent", extra={"team": team, "rule": rule.name, "error": str(error)})
                    refused.append(error)
                    continue
                warned.append(Warned(team, rule.name, found.bucket, projection.cap_reached_at))
        logger.info("forecast done", extra={"buckets": len(buckets), "warned": len(warned), "refused": len(refused)})
        if refused:
            raise refused[0]
        return warned

    @staticmethod
    def _window(rule: Rule, now: datetime) -> Window:
        return window(rule.period, rule.zone, now)

    def _recent_days(self, found: BudgetBucket, now: datetime) -> list[int]:
        """The last complete UTC days' spend, oldest first, when the team's day rollups are this
        bucket's own spend; [] otherwise (the projection then uses the window's mean)."""
        rule = found.rule
        when = rule.when
        narrowed = (when.app, when.user, when.model, when.env)
        if rule.measure != "cost" or any(narrowed) or when.metadata or set(rule.per) - {"team"}:
            return []
        if len(found.teams) != 1:
            return []
        (team,) = found.teams
        today = now.astimezone(UTC).date()
        days = [today - timedelta(days=back) for back in range(RECENT_DAYS, 0, -1)]
        return [self._spend.rollup(Rollup(team, day.isoformat())).cost for day in days]


def _one_teams(found: BudgetBucket) -> bool:
    """A bucket that is one team's budget whole (`per` at most `[team]`, one team counted): the
    only ones whose projection the team's dashboard can name by team and rule alone."""
    return len(found.teams) == 1 and set(found.rule.per) <= {"team"}
