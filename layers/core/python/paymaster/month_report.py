"""`paymaster report`: a team's closed month (the month close's report item) as a table.

search, 2026-11 (America/Los_Angeles: 2026-11-01T07:00Z to 2026-12-01T08:00Z), closed 2026-12-01T08:05Z
total                    18240 calls  $412.87331   61204118 in   9870233 out  37 denied
app      ranker          15001 calls  $380.112004  …
…
budget   search-monthly  team=search  2026-11  $412.87331 of $2000 (20 %)
"""

from datetime import UTC, datetime
from typing import TextIO

from paymaster.domain.events import MonthClosed, MonthRow, MonthTotals
from paymaster.domain.money import format_usd
from paymaster.ports import Reports


def print_report(reports: Reports, team: str, month: str, out: TextIO) -> int:
    """Prints the report; 1 (and says so) when the month has not been closed."""
    stored = reports.report(team, month)
    if stored is None:
        print(f"{team}, {month}: not closed (the month close runs at 00:45 on the 1st in the team's zone)", file=out)
        return 1
    print(report_table(stored.report), file=out, end="")
    return 0


def report_table(report: MonthClosed) -> str:
    lines = [
        f"{report.team}, {report.month} ({report.time_zone}: {_iso(report.starts_at)} to {_iso(report.ends_at)}), "
        f"closed {_iso(report.time)}",
        _line("total", "", report.totals),
    ]
    for kind, rows in (("app", report.by_app), ("model", report.by_model), ("user", report.by_user)):
        lines += [_row(kind, row) for row in rows]
    lines += [f"{'denials':<8} {rule.rule:<24} {rule.denials}" for rule in report.denials_by_rule]
    for budget in report.budgets:
        cost = budget.unit.startswith("cost_")
        spent = f"${format_usd(budget.spent)}" if cost else str(budget.spent)
        cap = f"${format_usd(budget.cap)}" if cost else str(budget.cap)
        used = 100 * budget.spent // budget.cap if budget.cap else 0
        lines.append(f"{'budget':<8} {budget.rule:<24} {budget.scope}  {budget.window}  {spent} of {cap} ({used} %)")
    if report.rows_left_out:
        lines.append(f"({report.rows_left_out} rows left out)")
    return "\n".join(lines) + "\n"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="minutes").replace("+00:00", "Z")


def _row(kind: str, row: MonthRow) -> str:
    return _line(kind, "(no user)" if row.name is None else row.name, row.totals)


def _line(kind: str, name: str, totals: MonthTotals) -> str:
    return (
        f"{kind:<8} {name:<24} {totals.calls:>8} calls  ${format_usd(totals.cost_usd_micros):<14} "
        f"{totals.input_tokens:>10} in  {totals.output_tokens:>9} out  {totals.denials} denied"
    )
