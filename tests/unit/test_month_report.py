"""`paymaster report`: a closed month as a table, or a clear word that it is not closed."""

import io

from paymaster.adapters.memory import MemoryReports
from paymaster.domain.events import MonthClosed
from paymaster.month_report import print_report
from tests.unit.test_event_contracts import sample

REPORT = MonthClosed.model_validate(sample("month-closed.json")["detail"])


def test_a_closed_month_prints_its_totals_rows_denials_and_budgets_as_a_table() -> None:
    reports, out = MemoryReports(), io.StringIO()
    reports.put_report(REPORT)

    assert print_report(reports, "search", "2026-11", out) == 0

    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "search, 2026-11 (America/Los_Angeles: 2026-11-01T07:00Z to 2026-12-01T08:00Z), closed 2026-12-01T08:45Z"
    )
    assert lines[1].split() == [
        "total",
        "18240",
        "calls",
        "$412.87331",
        "61204118",
        "in",
        "9870233",
        "out",
        "37",
        "denied",
    ]
    assert lines[2].split()[:4] == ["app", "ranker", "15001", "calls"]
    assert lines[7].split()[:5] == ["user", "(no", "user)", "14240", "calls"]
    assert lines[8].split() == ["denials", "search-monthly", "30"]
    assert lines[-1].split() == [
        "budget",
        "search-monthly",
        "team=search",
        "2026-11",
        "$412.87331",
        "of",
        "$2000",
        "(20",
        "%)",
    ]


def test_a_month_not_closed_says_so_and_exits_1() -> None:
    out = io.StringIO()

    assert print_report(MemoryReports(), "search", "2026-12", out) == 1
    assert "search, 2026-12: not closed" in out.getvalue()
