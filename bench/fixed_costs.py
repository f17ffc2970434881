"""What a deployment costs a month before any traffic, counted from its synthesised templates.

docs/COSTS.md gives the formula; this counts its terms from what `cdk deploy` would create:
the dashboards, every alarm's metrics, the schedules and their runs, the KMS keys, the provider
secrets the policy names and the most metric streams the policy yields. Prices are docs/COSTS.md's
us-east-1 list prices; check them before using the total.

    .venv/bin/python -m bench.fixed_costs [--deploy-file deploy/prod.yaml | --policy policy/x.yaml]
    .venv/bin/python -m bench.fixed_costs --copies 20     # the demo's 2 teams as 40

`--copies K` deploys K copies of each of the policy's teams instead (each with its own apps,
principals and team rules), to see what a larger company's fixed terms come to.

No credentials: the app is synthesised as `make policy-diff` does (an empty dependencies layer,
which no count depends on).
"""

import argparse
import copy
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))

from aws_cdk import App

from paymaster.domain.cardinality import metric_dimensions
from paymaster_infra.config import CONTEXT_DEPLOY_FILE, CONTEXT_POLICY_FILE, AppConfig
from paymaster_infra.policy_change import synthesise, without_dependencies

# docs/COSTS.md's table (us-east-1).
P_DASH = 3.00  # per dashboard-month beyond the first FREE_DASHBOARDS
FREE_DASHBOARDS = 3
P_ALARM = 0.10  # per standard-resolution alarm metric-month
P_METRIC = 0.30  # per custom metric-month (first 10,000)
P_KMS = 1.00  # per customer managed key-month
P_SECRET = 0.40  # per secret-month
P_SCHED = 1.00 / 1e6  # per Scheduler invocation beyond SCHED_FREE a month
SCHED_FREE = 14_000_000
P_REQ = 0.20 / 1e6  # per Lambda request
P_GBS = 0.0000133334  # per GB-second, arm64

# An assumption, not a measurement: a scheduled run's duration (docs/COSTS.md, "Scheduler").
SCHEDULED_RUN_S = 0.3
MINUTES_PER_MONTH = 43_800  # 730 hours, as AWS's pricing examples count a month


@dataclass(frozen=True)
class Inventory:
    dashboards: int
    alarm_metrics: int  # the metrics standard alarms read (a math alarm reads several)
    insights_alarms: int  # alarms on a Metrics Insights query: priced by what the query reads
    scheduled_runs: tuple[tuple[float, float], ...]  # each schedule's (runs a month, its function's GB)
    kms_keys: int
    functions: int


def inventory(templates: Mapping[str, Mapping[str, Any]]) -> Inventory:
    resources = [resource for template in templates.values() for resource in template["Resources"].values()]
    by_id = {logical_id: r for t in templates.values() for logical_id, r in t["Resources"].items()}

    def of(kind: str) -> list[Mapping[str, Any]]:
        return [resource["Properties"] for resource in resources if resource["Type"] == kind]

    alarm_metrics = insights = 0
    for alarm in of("AWS::CloudWatch::Alarm"):
        metrics = alarm.get("Metrics")
        if not metrics:
            alarm_metrics += 1
        elif any("SELECT" in str(metric.get("Expression", "")) for metric in metrics):
            insights += 1
        else:
            alarm_metrics += sum(1 for metric in metrics if "MetricStat" in metric)
    runs: list[tuple[float, float]] = []
    for schedule in of("AWS::Scheduler::Schedule"):
        target = schedule["Target"]["Arn"]
        function = by_id.get(target["Fn::GetAtt"][0]) if isinstance(target, dict) and "Fn::GetAtt" in target else None
        memory_mb = function["Properties"].get("MemorySize", 128) if function else 128
        runs.append((runs_per_month(schedule["ScheduleExpression"]), memory_mb / 1024))
    return Inventory(
        dashboards=len(of("AWS::CloudWatch::Dashboard")),
        alarm_metrics=alarm_metrics,
        insights_alarms=insights,
        scheduled_runs=tuple(runs),
        kms_keys=len(of("AWS::KMS::Key")),
        functions=len(of("AWS::Lambda::Function")),
    )


def runs_per_month(expression: str) -> float:
    """How often a Scheduler expression fires in a 730-hour month: `rate(N unit)`, or a cron of
    fixed minute and hour that runs daily, on one day of the week or on one day of the month."""
    if match := re.fullmatch(r"rate\((\d+) (minute|hour|day)s?\)", expression):
        every = int(match[1]) * {"minute": 1, "hour": 60, "day": 1440}[match[2]]
        return MINUTES_PER_MONTH / every
    if match := re.fullmatch(r"cron\((\d+) (\d+) (\S+) (\S+) (\S+) (\S+)\)", expression):
        day_of_month, month, day_of_week = match[3], match[4], match[5]
        if month == "*" and day_of_week in ("?", "*"):
            return MINUTES_PER_MONTH / 1440 if day_of_month == "*" else 1.0
        if month == "*" and day_of_month == "?" and re.fullmatch(r"[A-Z]{3}|\d", day_of_week):
            return MINUTES_PER_MONTH / (7 * 1440)
    raise ValueError(f"cannot count the runs of {expression!r}: add its shape to runs_per_month")


def copied_teams(document: Mapping[str, Any], copies: int) -> dict[str, Any]:
    """The policy document with `copies` copies of each team: `search` becomes `search-1` …
    `search-K`, each with its own principals. A rule for one team is repeated for each copy; a
    rule for several names them all; a rule for no team is kept as it is."""
    out = copy.deepcopy(dict(document))
    names = {team: [f"{team}-{i}" for i in range(1, copies + 1)] for team in document["teams"]}
    out["teams"] = {}
    for team, body in document["teams"].items():
        for i, name in enumerate(names[team], start=1):
            clone = copy.deepcopy(body)
            for app in clone["apps"].values():
                for principal in app["principals"]:
                    principal["name"] = f"{principal['name']}-{i}"
                    principal["arn"] = f"{principal['arn']}-{i}"
            out["teams"][name] = clone
    rules = []
    for rule in document.get("rules", []):
        team = rule.get("when", {}).get("team")
        if isinstance(team, str):
            for i, name in enumerate(names[team], start=1):
                rules.append(
                    {**copy.deepcopy(rule), "name": f"{rule['name']}-{i}", "when": {**rule["when"], "team": name}}
                )
        elif isinstance(team, list):
            rules.append({**copy.deepcopy(rule), "when": {**rule["when"], "team": [n for t in team for n in names[t]]}})
        else:
            rules.append(copy.deepcopy(rule))
    out["rules"] = rules
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--deploy-file", help="a deployment (deploy/<env>.yaml): its policy and shape")
    which.add_argument("--policy", help="a policy file, deployed with the defaults")
    parser.add_argument("--copies", type=int, default=1, help="deploy K copies of each team (default 1)")
    args = parser.parse_args(argv)
    context = (
        {CONTEXT_DEPLOY_FILE: args.deploy_file}
        if args.deploy_file
        else {CONTEXT_POLICY_FILE: args.policy}
        if args.policy
        else {}
    )
    with tempfile.TemporaryDirectory(prefix="paymaster-fixed-costs-") as scratch:
        root = Path(scratch)
        config = without_dependencies(AppConfig.from_context(App(context=context).node), root)
        if args.copies > 1:
            scaled = root / f"{config.policy_file.stem}-x{args.copies}.yaml"
            scaled.write_text(yaml.safe_dump(copied_teams(yaml.safe_load(config.policy_file.read_text()), args.copies)))
            config = replace(config, policy_file=scaled)
        policy = config.check()
        templates = synthesise(config, root / "synth")
    found = inventory(templates)
    secrets = len({p.api_key_secret for p in policy.providers.values() if p.api_key_secret})
    streams = metric_dimensions(policy).streams
    runs = sum(count for count, _ in found.scheduled_runs)
    run_cost = sum(count * (P_REQ + SCHEDULED_RUN_S * gb * P_GBS) for count, gb in found.scheduled_runs)
    rows = [
        ("dashboards", found.dashboards, max(found.dashboards - FREE_DASHBOARDS, 0) * P_DASH),
        ("alarm metrics", found.alarm_metrics, found.alarm_metrics * P_ALARM),
        ("Metrics Insights alarms (priced by what they read: not counted)", found.insights_alarms, 0.0),
        ("KMS keys", found.kms_keys, found.kms_keys * P_KMS),
        ("provider secrets", secrets, secrets * P_SECRET),
        ("schedule runs", round(runs), max(runs - SCHED_FREE, 0) * P_SCHED),
        (f"scheduled Lambda runs at {SCHEDULED_RUN_S} s", round(runs), run_cost),
    ]
    fixed = sum(cost for _, _, cost in rows)
    print(f"policy {config.policy_file.name}, {len(policy.teams)} teams, {found.functions} functions")
    for what, count, cost in rows:
        print(f"  {what:<66} {count:>8}  ${cost:8.2f}")
    print(f"  {'fixed, a month':<66} {'':>8}  ${fixed:8.2f}")
    most = "metric streams, at most (each $0.30 a month it receives data)"
    print(f"  {most:<66} {streams:>8}  ${streams * P_METRIC:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
