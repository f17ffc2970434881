"""The forecast's projections as EMF lines: the metric the team dashboard draws its forecast line
from (infra/paymaster_infra/dashboards.py), under exactly the names it reads."""

import io
from datetime import UTC, datetime

from paymaster import names
from paymaster.adapters.emf_metrics import EmfProjections
from tests.emf import documents

AT = datetime(2026, 11, 21, 6, tzinfo=UTC)


def test_a_projection_is_one_line_by_team_and_rule_at_the_instant_it_projects_from() -> None:
    out = io.StringIO()

    EmfProjections(names.METRICS_NAMESPACE, out).emit("search", "search-monthly", 1_800_000_000, AT)

    (document,) = documents(out.getvalue())  # validated against the EMF specification
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == names.METRICS_NAMESPACE
    assert directive["Dimensions"] == [list(names.PROJECTION_DIMENSIONS)]
    assert directive["Metrics"] == [{"Name": names.METRIC_PROJECTED_SPEND, "Unit": "None"}]
    assert (document["team"], document["rule"], document[names.METRIC_PROJECTED_SPEND]) == (
        "search",
        "search-monthly",
        [1_800_000_000],
    )
    assert document["_aws"]["Timestamp"] == int(AT.timestamp() * 1000)


def test_a_line_that_cannot_be_written_does_not_fail_the_forecast() -> None:
    closed = io.StringIO()
    closed.close()

    EmfProjections(names.METRICS_NAMESPACE, closed).emit("search", "search-monthly", 1, AT)
