"""Month close: at the start of each team month (its `alerts.time_zone`), last month's totals
from the ledger's entries, written once as a report item and published once as MonthClosed.

Sources (docs/SCHEDULES.md):
- totals by team, app, model and user, denials by rule: the entries admitted in the team's month
  (`Entries.between`: a Query per UTC partition it overlaps, with a sort-key range) — exact in
  the team's zone, unlike the ledger's UTC rollups;
- each monthly budget's final spend vs cap: its counter for the month of the same name in the
  rule's own zone (`CounterStore.counters`: read, never written).

Idempotency: the report is a conditional put (a second run writes nothing and keeps the first
report); it is marked published once the bus took its MonthClosed. A run that finds the report
unpublished (the first stopped between the two, or the bus refused) publishes it then — Lambda's
retries of the failed run, a run by hand, or the next month's close, which also publishes every
earlier report of the team still unpublished. So the event is sent once in the normal case, and
at least once always (consumers de-duplicate on its `request_id`, `month-close/<team>/<month>`).
"""

from dataclasses import dataclass
from datetime import datetime

from aws_lambda_powertools import Logger

from paymaster import schema
from paymaster.domain.errors import EventNotPublishedError, MonthNotOverError
from paymaster.domain.events import MONTH_CLOSED_ROWS, BudgetFinal, MonthClosed
from paymaster.domain.policy import Policy
from paymaster.domain.reports import budget_buckets, closable_at, month_closed, month_to_close, tally, team_month
from paymaster.ports import CounterStore, Entries, EventPublisher, Reports, StoredReport

logger = Logger(service="paymaster")


@dataclass(frozen=True, slots=True)
class Closed:
    """What a close did: `written` the report (False: the month had one), `published` its event
    now (False: it was already on the bus), and `earlier_published` the months before it whose
    reports were still unpublished (their MonthClosed refused by the bus on every retry) and went
    out now, oldest first."""

    team: str
    month: str
    written: bool
    published: bool
    earlier_published: tuple[str, ...] = ()


class MonthClose:
    def __init__(
        self, policy: Policy, entries: Entries, reports: Reports, counters: CounterStore, bus: EventPublisher
    ) -> None:
        self._policy = policy
        self._entries = entries
        self._reports = reports
        self._counters = counters
        self._bus = bus

    def close(self, team: str, now: datetime, month: str | None = None) -> Closed:
        """Closes `team`'s month before the one `now` is in (in the team's zone), or `month`.

        Then publishes every earlier month's report of the team still unpublished, oldest first.

        Raises MonthNotOverError (nothing read or written) when the month's end plus
        MONTH_CLOSE_MARGIN is after `now`: its last calls may not be in the ledger yet, and a
        report is written once. StoreUnavailableError when the ledger or the counters cannot be
        read or written; EventNotPublishedError when the bus did not take an event (raised after
        trying each; the reports are kept: a retry or the next month's run publishes them);
        KeyError for a team the policy does not name.
        """
        alerts = self._policy.teams[team].alerts
        month = month or month_to_close(alerts.zone, now)
        ready_at = closable_at(month, alerts.zone)
        if ready_at > now:
            raise MonthNotOverError(team, month, ready_at)
        stored = self._reports.report(team, month)
        written = False
        if stored is None:
            report = self._report(team, month, now)
            written = self._reports.put_report(report)
            # Not written: another run put it meanwhile, and its report is the one kept.
            stored = StoredReport(report, published=False) if written else self._reports.report(team, month)
            assert stored is not None, "a report the ledger refused to put as existing is there"
        earlier = [found.report for found in self._reports.unpublished(team) if found.report.month < month]
        pending = earlier + ([] if stored.published else [stored.report])
        published, refused = [], []
        for report in pending:
            try:
                self._publish(report)
            except EventNotPublishedError as error:
                logger.warning("month close not published", extra={"team": team, "month": report.month})
                refused.append(error)
                continue
            self._reports.mark_published(team, report.month)
            published.append(report.month)
        logger.info(
            "month closed",
            extra={"team": team, "month": month, "report_written": written, "published": published},
        )
        if refused:
            raise refused[0]
        return Closed(
            team,
            month,
            written=written,
            published=month in published,
            earlier_published=tuple(found for found in published if found != month),
        )

    def _report(self, team: str, month: str, now: datetime) -> MonthClosed:
        alerts = self._policy.teams[team].alerts
        span = team_month(month, alerts.zone)
        counted = tally(self._entries.between(team, span.start, span.end))
        return month_closed(team, alerts.time_zone, span, counted=counted, budgets=self._budgets(team, month), now=now)

    def _budgets(self, team: str, month: str) -> list[BudgetFinal]:
        monthly = [found for found in budget_buckets(self._policy, team) if found.rule.period == "month"]
        keys = [(schema.counter_pk(found.rule.name, found.bucket), month) for found in monthly]
        states = self._counters.counters(keys) if keys else {}
        finals = []
        for found, key in zip(monthly, keys, strict=True):
            state = states.get(key)
            finals.append(
                BudgetFinal(
                    rule=found.rule.name,
                    scope=found.bucket,
                    unit=found.rule.unit,
                    window=month,
                    spent=0 if state is None else state.spent,
                    cap=found.rule.cap,
                )
            )
        return finals

    def _publish(self, report: MonthClosed) -> None:
        unpublished = self._bus.publish([report.listing_at_most(MONTH_CLOSED_ROWS)])
        if unpublished:
            failure = unpublished[0]
            raise EventNotPublishedError(
                f"the bus did not take MonthClosed {report.request_id}: {failure.code} {failure.message}"
            )
