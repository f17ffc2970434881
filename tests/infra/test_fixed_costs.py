"""`bench.fixed_costs` counts docs/COSTS.md's fixed terms from the templates: each alarm's
metrics, the schedules' runs, the dashboards and keys."""

from typing import Any

import pytest
from aws_cdk.assertions import Template
from bench.fixed_costs import MINUTES_PER_MONTH, copied_teams, inventory, runs_per_month


@pytest.mark.parametrize(
    ("expression", "runs"),
    [
        ("rate(1 minute)", MINUTES_PER_MONTH),
        ("rate(5 minutes)", MINUTES_PER_MONTH / 5),
        ("rate(2 hours)", MINUTES_PER_MONTH / 120),
        ("cron(0 6 * * ? *)", MINUTES_PER_MONTH / 1440),
        ("cron(45 0 1 * ? *)", 1.0),
        ("cron(0 9 ? * MON *)", MINUTES_PER_MONTH / (7 * 1440)),
    ],
)
def test_a_schedule_s_runs_a_month(expression: str, runs: float) -> None:
    assert runs_per_month(expression) == pytest.approx(runs)


def test_a_schedule_it_cannot_count_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError, match="runs_per_month"):
        runs_per_month("cron(0/15 * * * ? *)")


def test_math_alarms_count_the_metrics_they_read_and_insights_alarms_apart() -> None:
    stat = {"MetricStat": {"Metric": {"MetricName": "x"}, "Period": 60, "Stat": "Sum"}}
    template: dict[str, Any] = {
        "Resources": {
            "Plain": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "Errors"}},
            "Math": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {
                    "Metrics": [{"Id": "e", "Expression": "a + b"}, {"Id": "a", **stat}, {"Id": "b", **stat}]
                },
            },
            "Insights": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {"Metrics": [{"Id": "q", "Expression": "SELECT SUM(Denials) FROM paymaster"}]},
            },
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"MemorySize": 512}},
            "Every": {
                "Type": "AWS::Scheduler::Schedule",
                "Properties": {
                    "ScheduleExpression": "rate(1 minute)",
                    "Target": {"Arn": {"Fn::GetAtt": ["Fn", "Arn"]}},
                },
            },
        }
    }

    found = inventory({"S": template})

    assert (found.alarm_metrics, found.insights_alarms, found.functions) == (3, 1, 1)
    assert found.scheduled_runs == ((MINUTES_PER_MONTH, 0.5),)


def test_the_stacks_schedules_are_all_shapes_it_counts(state_template: Template, gateway_template: Template) -> None:
    found = inventory({"state": state_template.to_json(), "gateway": gateway_template.to_json()})

    # The sweeper every minute, the daily forecast, each demo team's digest and month close.
    assert sorted(runs for runs, _ in found.scheduled_runs) == pytest.approx(
        sorted([MINUTES_PER_MONTH, *[MINUTES_PER_MONTH / 1440] * 3, 1.0, 1.0])
    )
    assert found.dashboards == 3  # a team's each, and the overview


def test_copies_of_a_team_keep_its_rules_per_copy_and_its_shared_rules_shared() -> None:
    document = {
        "teams": {"search": {"apps": {"ranker": {"principals": [{"name": "r", "arn": "arn:aws:iam::1:role/r"}]}}}},
        "rules": [
            {"name": "monthly", "when": {"team": "search"}, "limit": 1},
            {"name": "users", "when": {"team": ["search"]}, "limit": 2},
            {"name": "dev", "when": {"env": "dev"}, "limit": 3},
        ],
    }

    scaled = copied_teams(document, 3)

    assert list(scaled["teams"]) == ["search-1", "search-2", "search-3"]
    arns = {p["arn"] for team in scaled["teams"].values() for p in team["apps"]["ranker"]["principals"]}
    assert len(arns) == 3
    assert [(r["name"], r["when"]) for r in scaled["rules"]] == [
        ("monthly-1", {"team": "search-1"}),
        ("monthly-2", {"team": "search-2"}),
        ("monthly-3", {"team": "search-3"}),
        ("users", {"team": ["search-1", "search-2", "search-3"]}),
        ("dev", {"env": "dev"}),
    ]
    assert document["teams"].keys() == {"search"}
