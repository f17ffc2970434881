"""CloudWatch dashboards generated from the policy: one per team, and an overview for the platform team.

Every metric in the `paymaster` namespace is named from `paymaster.names` (the names the gateway's
EMF lines carry, docs/METRICS.md) and queried under exactly one of the dimension sets the gateway
writes, so a dashboard cannot ask for a metric nobody emits. A policy past its metric stream
budget collapses `app` (then `model`) to `_all` (`domain.cardinality`): the dashboards then leave
out what they can no longer tell apart — cost by app, a cap that applies per app — and say so.

The bodies are plain data (`team_body`, `overview_body`), rendered without CDK, so tests read
them as CloudWatch will.

Month-to-date spend is metric math over the hourly `CostMicroUsd` sum of the rule's streams:

    c    = SUM(SEARCH('{paymaster,team,app,model,env} MetricName="CostMicroUsd" team="search"', 'Sum', 3600)) / 1000000
    ym   = YEAR(c) * 12 + MONTH(c)                  # the month of each point
    mtd  = RUNNING_SUM(IF(ym == MAX(ym), c, 0))     # only the latest month's points, summed

Example: $40 an hour since 2026-11-01T00:00Z → mtd at 2026-11-03T00:00Z is 48 × 40 = $1,920,
under a $2,000 cap drawn as a horizontal annotation. CloudWatch's months are UTC, a budget's are
in its `time_zone`: near a month's turn the line is off by the zone's offset (the counters and
`GET /v1/usage` are exact). A day budget is drawn as daily sums, a week budget as 7-day sums
(CloudWatch's periods, not the rule's weeks).

SEARCH finds only the streams that received data in the last two weeks (CloudWatch's search
window): a stream that spent early in the month and nothing since drops out of the line after
14 days, so late in a month the line can read low. The dashboards say so; the counters, the
ledger and `GET /v1/usage` are the account. The functions used (YEAR, MONTH, RUNNING_SUM, IF,
MAX) are in CloudWatch's metric math table (docs "Using metric math"); a search value is a
policy name, so it needs none of SEARCH's escapes, and a query past CloudWatch's 1,024
characters is not drawn but said.
"""

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Aws, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from paymaster import names
from paymaster.domain.cardinality import MetricDimensions, metric_dimensions, models_ending
from paymaster.domain.errors import StoreUnavailableError
from paymaster.domain.money import MICRO_PER_USD
from paymaster.domain.policy import Policy, Rule, When

Widget = dict[str, Any]

HOUR_S = 3_600
DAY_S = 86_400
WEEK_S = 7 * DAY_S
# The dashboards open on the last 31 days: a month-to-date line needs its whole month in range.
DEFAULT_RANGE = "-P31D"
# A graph holds at most 500 metrics and expressions. A spend line takes up to five rows on a
# team's dashboard (cost, month, month to date, forecast metric and line) and up to four on the
# overview (the line's rows and its share of the cap).
LINES_PER_GRAPH = 25
ROWS_PER_OVERVIEW_GRAPH = 100
# CloudWatch's limit on a search expression's query, in characters (applied here to the whole SEARCH(…)).
SEARCH_QUERY_MAX = 1024
# What SEARCH may hold in a double-quoted value without escapes: a policy Name (`domain.policy`).
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._:/-]+")
TOP_SPENDERS = 10
_SEARCH_WINDOW = (
    "Spend lines find the app and model streams with data in the last 14 days: one that spent early "
    "in a month and not since drops out, so late in a month a line can read low (`GET /v1/usage` is exact)."
)
_PERIOD_OF = {"day": DAY_S, "week": WEEK_S, "month": HOUR_S}
_FILTERABLE = (names.DIMENSION_TEAM, names.DIMENSION_APP, names.DIMENSION_MODEL, names.DIMENSION_ENV)


@dataclass(frozen=True)
class SpendLine:
    """One budget bucket a team's requests count in, as the request metrics can draw it.

    `filters`: request dimension → the values it counts (any of them); a dimension left out counts
    every value. `shared`: the bucket counts other teams' spend too (a rule without `per: [team]`
    whose `when` names more teams, or none). `projected`: the forecast publishes its projection
    under (team, rule) — a bucket that is exactly the team's.
    """

    rule: Rule
    label: str
    filters: Mapping[str, tuple[str, ...]]
    shared: bool
    projected: bool


@dataclass(frozen=True)
class Skipped:
    rule: Rule
    why: str


def spend_lines(policy: Policy, team: str, dimensions: MetricDimensions) -> tuple[list[SpendLine], list[Skipped]]:
    """The cost budgets that count `team`'s requests, one line per bucket; and those the metrics
    cannot draw, with why.

    Example (policy/demo.yaml): search → `search-monthly` (team=search, projected) and
    `dev-daily` (per team and app, when env dev: team=search, app=ranker-dev, env=dev).
    """
    team_apps = policy.teams[team].apps
    models = sorted(models_ending(policy, team))
    lines: list[SpendLine] = []
    skipped: list[Skipped] = []
    for rule in policy.rules:
        if not (rule.is_budget and rule.measure == "cost"):
            continue
        when = rule.when
        apps = [name for name, app in team_apps.items() if when.can_count(team, app.env, {name})]
        rule_models = [model for model in models if _allows(when.model, model)]
        if not apps or not rule_models:
            continue
        if "user" in rule.per or when.user or when.metadata:
            skipped.append(Skipped(rule, "it counts per user or by metadata, which no metric dimension carries"))
            continue
        narrowed = {dimension for dimension in _FILTERABLE if getattr(when, dimension)} | set(rule.per)
        lost = sorted(narrowed & set(dimensions.collapsed))
        if lost:
            skipped.append(
                Skipped(rule, f"the policy's metric stream budget collapses {', '.join(lost)}, which it counts by")
            )
            continue
        values = {
            names.DIMENSION_TEAM: [team],
            names.DIMENSION_APP: apps,
            names.DIMENSION_MODEL: rule_models,
            names.DIMENSION_ENV: sorted({team_apps[app].env for app in apps}),
        }
        per = [dimension for dimension in _FILTERABLE if dimension in rule.per]
        shared = names.DIMENSION_TEAM not in rule.per and when.team != [team]
        buckets = [dict(zip(per, bucket, strict=True)) for bucket in itertools.product(*(values[d] for d in per))]
        filters = [_bucket_filters(when, by_bucket) for by_bucket in buckets]
        # The whole SEARCH(…) is measured, a little more than its query: a rule is drawn whole or not at all.
        if any(
            len(search(names.METRIC_COST, names.REQUEST_DIMENSIONS, f, "Sum", DAY_S)) > SEARCH_QUERY_MAX
            for f in filters
        ):
            why = f"its metric search names more values than CloudWatch's {SEARCH_QUERY_MAX:,} characters hold"
            skipped.append(Skipped(rule, why))
            continue
        projected = not shared and set(rule.per) <= {names.DIMENSION_TEAM}
        for by_bucket, found_by in zip(buckets, filters, strict=True):
            if dimension_values := [f"{d}={v}" for d, v in by_bucket.items() if d != names.DIMENSION_TEAM]:
                label = f"{rule.name} ({', '.join(dimension_values)})"
            else:
                label = rule.name
            lines.append(
                SpendLine(rule, label + (" — shared with other teams" if shared else ""), found_by, shared, projected)
            )
    return lines, skipped


def _bucket_filters(when: When, bucket: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """The request dimensions a bucket's spend is found by: its own values, else the rule's `when`."""
    filters: dict[str, tuple[str, ...]] = {}
    for dimension in _FILTERABLE:
        if dimension in bucket:
            filters[dimension] = (bucket[dimension],)
        elif values := getattr(when, dimension):
            filters[dimension] = tuple(values)
    return filters


def _allows(values: Sequence[str] | None, value: str) -> bool:
    return values is None or value in values


# --- query text -------------------------------------------------------------------------------


def search(metric: str, dimensions: Sequence[str], filters: Mapping[str, Sequence[str]], stat: str, period: int) -> str:
    """A SEARCH over the streams of `metric` under exactly `dimensions`, their values filtered.

    >>> search("Requests", ("team", "app", "model", "env"), {"team": ["search"]}, "Sum", 300)
    'SEARCH(\\'{paymaster,team,app,model,env} MetricName="Requests" team="search"\\', \\'Sum\\', 300)'
    """
    return f"SEARCH('{search_query(metric, dimensions, filters)}', '{stat}', {period})"


def search_query(metric: str, dimensions: Sequence[str], filters: Mapping[str, Sequence[str]]) -> str:
    """The query inside SEARCH('…'): exact dimension names, then one term per filtered dimension,
    several values as `(app="a" OR app="b")`.

    Values are policy names (`domain.policy.Name`, checked again here): nothing in them needs
    SEARCH's backslash escapes, and none holds the `'` that would end the query.

    >>> search_query("Cost", ("team", "app"), {"app": ["a", "b"]})
    '{paymaster,team,app} MetricName="Cost" (app="a" OR app="b")'
    """
    terms = [f'MetricName="{metric}"']
    for dimension, values in filters.items():
        assert dimension in dimensions, f"{dimension} is not in {dimensions}"
        for value in values:
            if not _PLAIN_VALUE.fullmatch(value):
                raise ValueError(f"{dimension} {value!r} is not a policy name: it cannot go into a metric search")
        alternatives = [f'{dimension}="{value}"' for value in values]
        terms.append(alternatives[0] if len(values) == 1 else f"({' OR '.join(alternatives)})")
    schema = "{" + ",".join((names.METRICS_NAMESPACE, *dimensions)) + "}"
    return f"{schema} {' '.join(terms)}"


def insights(
    metric: str,
    dimensions: Sequence[str],
    where: Mapping[str, str],
    group_by: Sequence[str],
    *,
    limit: int | None = None,
) -> str:
    """A Metrics Insights query summing `metric` over the streams with exactly `dimensions`, one
    series per value of `group_by` (largest first), or one in all.

    Values come from the policy, whose names hold no quote (`domain.policy.Name`).

    >>> insights("Requests", ("team", "model"), {"team": "a"}, ["model"])
    "SELECT SUM(Requests) FROM SCHEMA(paymaster, team, model) WHERE team = 'a' GROUP BY model ORDER BY SUM() DESC"
    """
    query = f"SELECT SUM({metric}) FROM SCHEMA({', '.join((names.METRICS_NAMESPACE, *dimensions))})"  # noqa: S608
    if where:
        query += " WHERE " + " AND ".join(f"{dimension} = '{value}'" for dimension, value in where.items())
    if group_by:
        query += f" GROUP BY {', '.join(group_by)} ORDER BY SUM() DESC"
    return query + (f" LIMIT {limit}" if limit is not None else "")


# --- widgets ----------------------------------------------------------------------------------


def _expression(
    expression: str, expression_id: str, label: str = "", *, visible: bool = True, **extra: Any
) -> list[Any]:
    options: dict[str, Any] = {"expression": expression, "id": expression_id, "label": label, **extra}
    if not visible:
        options["visible"] = False
    return [options]


def _graph(
    title: str,
    region: str,
    metrics: list[list[Any]],
    *,
    width: int = 12,
    unit: str = "",
    period: int = 300,
    stat: str = "Sum",
    horizontal: Sequence[Mapping[str, Any]] = (),
    view: str = "timeSeries",
) -> Widget:
    properties: dict[str, Any] = {
        "title": title,
        "region": region,
        "view": view,
        "stacked": False,
        "period": period,
        "stat": stat,
        "metrics": metrics,
        "yAxis": {"left": {"min": 0, "label": unit, "showUnits": False}},
    }
    if horizontal:
        properties["annotations"] = {"horizontal": list(horizontal)}
    return {"type": "metric", "width": width, "height": 6, "properties": properties}


def _text(markdown: str) -> Widget:
    # Two rows for a heading and a paragraph, one more for each further paragraph.
    return {"type": "text", "width": 24, "height": 2 + markdown.count("\n\n"), "properties": {"markdown": markdown}}


def _usd(micro: int) -> float:
    return micro / MICRO_PER_USD


def _spend_expressions(line: SpendLine, key: str, *, label: str, visible: bool) -> tuple[list[list[Any]], str]:
    """The metric math of one line's spend in its rule's window, USD; and the id of its result."""
    rule = line.rule
    period = _PERIOD_OF[rule.period]
    found = search(names.METRIC_COST, names.REQUEST_DIMENSIONS, line.filters, "Sum", period)
    if rule.period != "month":
        return [_expression(f"SUM({found}) / {MICRO_PER_USD}", f"c{key}", label, visible=visible)], f"c{key}"
    cost = _expression(f"SUM({found}) / {MICRO_PER_USD}", f"c{key}", visible=False)
    return [
        cost,
        _expression(f"YEAR(c{key}) * 12 + MONTH(c{key})", f"ym{key}", visible=False),
        _expression(f"RUNNING_SUM(IF(ym{key} == MAX(ym{key}), c{key}, 0))", f"mtd{key}", label, visible=visible),
    ], f"mtd{key}"


def _spend_graph(team: str, rule: Rule, lines: Sequence[SpendLine], region: str) -> Widget:
    metrics: list[list[Any]] = []
    for index, line in enumerate(lines):
        expressions, _ = _spend_expressions(line, str(index), label=f"spent: {line.label}", visible=True)
        metrics += expressions
        if line.projected:
            metrics.append(
                [
                    names.METRICS_NAMESPACE,
                    names.METRIC_PROJECTED_SPEND,
                    names.DIMENSION_TEAM,
                    team,
                    names.DIMENSION_RULE,
                    rule.name,
                    {"id": f"p{index}", "stat": "Maximum", "period": DAY_S, "visible": False},
                ]
            )
            metrics.append(_expression(f"p{index} / {MICRO_PER_USD}", f"f{index}", "forecast at the window's end"))
    horizontal = [{"value": _usd(rule.cap), "label": f"cap {_usd(rule.cap):,.2f} USD", "color": "#d62728"}]
    horizontal += [
        {"value": _usd(rule.limit_units * action.at // 100), "label": _action_label(action.at, action.downgrade_to)}
        for action in rule.actions
        if not action.block
    ]
    window = {"month": "month to date (UTC months)", "week": "per 7 days", "day": "per UTC day"}[rule.period]
    return _graph(
        f"{rule.name}: spend {window} vs cap",
        region,
        metrics,
        unit="USD",
        period=_PERIOD_OF[rule.period],
        horizontal=horizontal,
    )


def _action_label(at: int, downgrade_to: str | None) -> str:
    return f"downgrade to {downgrade_to} at {at} %" if downgrade_to else f"alert at {at} %"


def _sum_of(metric: str, filters: Mapping[str, Sequence[str]], key: str, label: str, stat: str = "Sum") -> list[Any]:
    found = search(metric, names.REQUEST_DIMENSIONS, filters, stat, 300)
    return _expression(f"SUM({found})", key, label)


def team_body(policy: Policy, team: str, *, region: str) -> dict[str, Any]:
    """The dashboard of one team."""
    dimensions = metric_dimensions(policy)
    mine = {names.DIMENSION_TEAM: [team]}
    lines, skipped = spend_lines(policy, team, dimensions)
    notes = [
        f"# paymaster: {team}",
        f"Spend, caps and traffic from the gateway's metrics; the ledger is the account. {_SEARCH_WINDOW}",
    ]
    if dimensions.collapsed:
        notes.append(
            f"The policy's metric stream budget ({dimensions.budget:,}) collapses {', '.join(dimensions.collapsed)} "
            f"to `{names.COLLAPSED}`: per-{' and per-'.join(dimensions.collapsed)} views are left out."
        )
    notes += [f"`{s.rule.name}` is not drawn: {s.why}." for s in skipped]
    widgets = [_text("\n\n".join(notes))]

    by_rule: dict[str, list[SpendLine]] = {}
    for line in lines:
        by_rule.setdefault(line.rule.name, []).append(line)
    for rule_lines in by_rule.values():
        for start in range(0, len(rule_lines), LINES_PER_GRAPH):
            widgets.append(_spend_graph(team, rule_lines[0].rule, rule_lines[start : start + LINES_PER_GRAPH], region))

    for dimension in (names.DIMENSION_APP, names.DIMENSION_MODEL):
        if dimension in dimensions.collapsed:
            continue
        query = insights(names.METRIC_COST, names.REQUEST_DIMENSIONS, {names.DIMENSION_TEAM: team}, [dimension])
        widgets.append(
            _graph(
                f"Cost by {dimension} (micro-USD per hour; Metrics Insights keeps two weeks)",
                region,
                [_expression(query, f"by{dimension}", period=HOUR_S)],
                period=HOUR_S,
                unit="micro-USD",
            )
        )
    widgets += [
        _graph(
            "Tokens",
            region,
            [
                _sum_of(names.METRIC_INPUT_TOKENS, mine, "input", "input"),
                _sum_of(names.METRIC_OUTPUT_TOKENS, mine, "output", "output"),
                _sum_of(names.METRIC_CACHE_READ_TOKENS, mine, "cacheread", "cache read"),
                _sum_of(names.METRIC_CACHE_WRITE_TOKENS, mine, "cachewrite", "cache write"),
            ],
        ),
        _graph(
            "Requests, downgrades, fallbacks, provider errors",
            region,
            [
                _sum_of(names.METRIC_REQUESTS, mine, "requests", "requests"),
                _sum_of(names.METRIC_DOWNGRADES, mine, "downgrades", "downgraded"),
                _sum_of(names.METRIC_FALLBACKS, mine, "fallbacks", "fell back"),
                _sum_of(names.METRIC_PROVIDER_ERRORS, mine, "providererrors", "provider errors"),
            ],
        ),
        _graph(
            "Denials by rule (and env)",
            region,
            [_expression(search(names.METRIC_DENIALS, names.DENIAL_DIMENSIONS, mine, "Sum", 300), "denials")],
        ),
    ]
    for metric, title in ((names.METRIC_LATENCY, "Latency"), (names.METRIC_TIME_TO_FIRST_TOKEN, "Time to first token")):
        # Percentiles do not add up across streams: one line per app and model (or what is left of them).
        widgets.append(
            _graph(
                f"{title} p50 / p99 by app and model",
                region,
                [
                    _expression(search(metric, names.REQUEST_DIMENSIONS, mine, stat, 300), f"{stat}{index}", stat)
                    for index, stat in enumerate(("p50", "p99"))
                ],
                unit="ms",
                stat="p99",
            )
        )
    return {"start": DEFAULT_RANGE, "periodOverride": "inherit", "widgets": widgets}


@dataclass(frozen=True)
class Watched:
    """The AWS resources the overview draws, by the names their metrics carry."""

    api_name: str
    stage: str
    functions: Sequence[str]
    tables: Sequence[str]
    dead_letter_queues: Sequence[str]


def overview_body(policy: Policy, watched: Watched, *, region: str) -> dict[str, Any]:
    """The platform team's dashboard: every team's budgets, top spenders, and the machinery."""
    dimensions = metric_dimensions(policy)
    widgets: list[Widget] = [
        _text(
            "# paymaster: overview\nEvery team's budgets as a share of their caps, the top spenders, and the "
            f"gateway's own health. Alarms go to the ops topic (operational_alarms.py). {_SEARCH_WINDOW}"
        )
    ]
    graphs: list[list[list[Any]]] = [[]]
    count = 0
    for team in policy.teams:
        lines, _ = spend_lines(policy, team, dimensions)
        for line in lines:
            key = str(count)
            rows, spent = _spend_expressions(line, key, label="", visible=False)
            rows.append(_expression(f"100 * {spent} / {_usd(line.rule.cap)}", f"share{key}", f"{team}: {line.label}"))
            # A line's rows stay in one graph: its share reads the ids of the rows before it.
            if len(graphs[-1]) + len(rows) > ROWS_PER_OVERVIEW_GRAPH:
                graphs.append([])
            graphs[-1] += rows
            count += 1
    cap = [{"value": 100, "label": "cap", "color": "#d62728"}]
    for shares in (graph for graph in graphs if graph):
        widgets.append(
            _graph(
                "Spend as % of each budget's cap (month to date; day and week budgets per period)",
                region,
                shares,
                width=24,
                unit="%",
                period=HOUR_S,
                horizontal=cap,
            )
        )
    top = insights(names.METRIC_COST, names.REQUEST_DIMENSIONS, {}, [names.DIMENSION_TEAM], limit=TOP_SPENDERS)
    unavailable = insights(
        names.METRIC_DENIALS,
        names.DENIAL_DIMENSIONS,
        {names.DIMENSION_REASON: StoreUnavailableError.code},
        [names.DIMENSION_TEAM],
    )
    api = ["ApiName", watched.api_name, "Stage", watched.stage]
    widgets += [
        _graph(
            f"Top {TOP_SPENDERS} spenders (micro-USD per day)",
            region,
            [_expression(top, "top", period=DAY_S)],
            period=DAY_S,
            view="bar",
        ),
        _graph(
            "Gateway: 5xx and 4xx rate (API Gateway)",
            region,
            [
                ["AWS/ApiGateway", "5XXError", *api, {"stat": "Average", "label": "5xx rate"}],
                ["AWS/ApiGateway", "4XXError", *api, {"stat": "Average", "label": "4xx rate"}],
            ],
            stat="Average",
        ),
        _graph(
            "Provider errors by provider; refusals without the counter store",
            region,
            [
                _expression(
                    search(names.METRIC_PROVIDER_ERRORS, names.PROVIDER_ERROR_DIMENSIONS, {}, "Sum", 300), "providers"
                ),
            ],
        ),
        _graph(
            f"Refused: `{StoreUnavailableError.code}` by team",
            region,
            [_expression(unavailable, "unavailable", period=300)],
        ),
        _graph(
            "DynamoDB: throttled reads and writes, transaction conflicts",
            region,
            [
                ["AWS/DynamoDB", metric, "TableName", table, {"label": f"{metric} {table}"}]
                for table in watched.tables
                for metric in ("ReadThrottleEvents", "WriteThrottleEvents", "TransactionConflict")
            ],
        ),
        _graph(
            "Lambda: duration p99",
            region,
            [["AWS/Lambda", "Duration", "FunctionName", name, {"stat": "p99"}] for name in watched.functions],
            unit="ms",
            stat="p99",
        ),
        _graph(
            "Lambda: concurrent executions (max)",
            region,
            [["AWS/Lambda", "ConcurrentExecutions", "FunctionName", name] for name in watched.functions],
            stat="Maximum",
        ),
        _graph(
            "Lambda: errors and throttles",
            region,
            [
                ["AWS/Lambda", metric, "FunctionName", name]
                for name in watched.functions
                for metric in ("Errors", "Throttles")
            ],
        ),
        _graph(
            "Dead-letter queues: messages waiting (each one is work that failed every retry)",
            region,
            [
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", name]
                for name in watched.dead_letter_queues
            ],
            stat="Maximum",
        ),
    ]
    return {"start": "-P7D", "periodOverride": "inherit", "widgets": widgets}


# --- the construct ----------------------------------------------------------------------------


class Dashboards(Construct):
    """A dashboard per team of the policy (`<stack>-<team>`), and `<stack>-overview`.

    Lives in the gateway stack: a policy change redeploys it with the gateway. The overview watches
    what it is given: every function, table and dead-letter queue of the stacks.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        policy: Policy,
        api: apigateway.RestApi,
        functions: Sequence[lambda_.IFunction],
        tables: Sequence[dynamodb.ITable],
        dead_letter_queues: Sequence[sqs.IQueue],
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.teams: dict[str, cloudwatch.CfnDashboard] = {}
        for team in policy.teams:
            suffix = names.alert_topic_suffix(team)
            self.teams[team] = cloudwatch.CfnDashboard(
                self,
                f"Team-{suffix}",
                dashboard_name=f"{stack.stack_name}-{suffix}",
                dashboard_body=stack.to_json_string(team_body(policy, team, region=Aws.REGION)),
            )
        watched = Watched(
            api_name=api.rest_api_name,
            stage=api.deployment_stage.stage_name,
            functions=[function.function_name for function in functions],
            tables=[table.table_name for table in tables],
            dead_letter_queues=[queue.queue_name for queue in dead_letter_queues],
        )
        self.overview = cloudwatch.CfnDashboard(
            self,
            "Overview",
            dashboard_name=f"{stack.stack_name}-overview",
            dashboard_body=stack.to_json_string(overview_body(policy, watched, region=Aws.REGION)),
        )
