"""The dashboards' bodies, rendered from the policy: every metric they ask for is one the gateway writes.

What the gateway writes is read from its own EMF lines (`EmfMetrics.documents` of a request that
carries every metric), not restated here; the forecast's projection is the one metric of
`paymaster.names` no gateway line carries (the forecast function writes it).
"""

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from aws_cdk.assertions import Template
from bench.fixed_costs import copied_teams

from paymaster import names
from paymaster.adapters.emf_metrics import EmfMetrics
from paymaster.adapters.policy_file import load_policy
from paymaster.domain.cardinality import metric_dimensions, metric_streams
from paymaster.domain.chat import Usage
from paymaster.domain.errors import StoreUnavailableError
from paymaster.domain.metering import Bill
from paymaster.domain.policy import MetricsSettings, Policy
from paymaster.ports import RequestMetrics
from paymaster_infra import dashboards, operational_alarms
from paymaster_infra.config import DEFAULT_POLICY_FILE, REPO_ROOT
from paymaster_infra.deployment import Paymaster
from tests.infra.test_stacks import import_of, logical_id

REGION = "eu-west-1"
WATCHED = dashboards.Watched(
    api_name="Api", stage="prod", functions=["gw", "ledger"], tables=["counters"], dead_letter_queues=["dlq"]
)

SEARCH = re.compile(r"SEARCH\('\{([^}]*)\} (.*?)', '(\w+)', (\d+)\)")
SEARCH_TERM = re.compile(r'(\w+)="([^"]*)"')
INSIGHTS = re.compile(
    r"^SELECT SUM\((\w+)\) FROM SCHEMA\(([^)]*)\)(?: WHERE (.*?))?"
    r"(?: GROUP BY (.*?) ORDER BY SUM\(\) DESC(?: LIMIT \d+)?)?$"
)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(REPO_ROOT / DEFAULT_POLICY_FILE)


def collapsed(policy: Policy, dimensions: tuple[str, ...]) -> Policy:
    """The policy with a second prod app for search (so that collapsing `app` saves streams), and
    a stream budget that collapses exactly `dimensions`."""
    data = policy.model_dump(mode="json")
    data["teams"]["search"]["apps"]["ranker-batch"] = {
        "env": "prod",
        "principals": [{"name": "search-batch", "arn": "arn:aws:iam::111111111111:role/search-batch"}],
    }
    wider = Policy.model_validate(data)
    budget = metric_streams(wider, dimensions)
    narrowed = wider.model_copy(update={"metrics": MetricsSettings(max_streams=budget)})
    assert metric_dimensions(narrowed).collapsed == dimensions
    return narrowed


def emitted(policy: Policy) -> set[tuple[str, tuple[str, ...]]]:
    """(metric, dimension names) of every stream a request that hits every metric writes."""
    request = RequestMetrics(
        team="search",
        app="ranker",
        env="prod",
        model="gpt-4o-mini",
        bill=Bill(Usage(10, 20, cache_read_tokens=3, cache_write_tokens=4), 123, "provider_usage"),
        denied_by="search-monthly",
        downgraded=True,
        fell_back=True,
        provider_errors=("openai",),
        latency_ms=5,
        first_token_ms=2,
    )
    streams = set()
    for document in EmfMetrics(metric_dimensions(policy), names.METRICS_NAMESPACE, io.StringIO()).documents(request):
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == names.METRICS_NAMESPACE
            for dimension_set in directive["Dimensions"]:
                streams |= {(metric["Name"], tuple(dimension_set)) for metric in directive["Metrics"]}
    return streams


def metric_queries(body: dict[str, Any]) -> Iterator[tuple[str, str, tuple[str, ...], dict[str, set[str]]]]:
    """(kind, metric, dimension names, {dimension: values it filters or groups on}) of every
    reference to the paymaster namespace in the body; `*` stands for a GROUP BY."""
    for widget in body["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], str):
                namespace, metric, *pairs = (item for item in row if isinstance(item, str))
                if namespace == names.METRICS_NAMESPACE:
                    dimensions = tuple(pairs[0::2])
                    yield "metric", metric, dimensions, {d: {v} for d, v in zip(pairs[0::2], pairs[1::2], strict=True)}
                else:
                    assert namespace.startswith("AWS/"), row
                continue
            expression = row[0]["expression"]
            if expression.startswith("SELECT"):
                match = INSIGHTS.match(expression)
                assert match, expression
                metric, schema, where, group_by = match.groups()
                namespace, *dimensions = (part.strip() for part in schema.split(","))
                assert namespace == names.METRICS_NAMESPACE
                values: dict[str, set[str]] = {d.strip(): {"*"} for d in group_by.split(",")} if group_by else {}
                for condition in where.split(" AND ") if where else ():
                    dimension, value = re.fullmatch(r"(\w+) = '([^']*)'", condition).groups()  # type: ignore[union-attr]
                    values.setdefault(dimension, set()).add(value)
                yield "insights", metric, tuple(dimensions), values
            for schema, terms, _, _ in SEARCH.findall(expression):
                namespace, *dimensions = schema.split(",")
                assert namespace == names.METRICS_NAMESPACE
                (metric,) = re.findall(r'MetricName="(\w+)"', terms)
                values = {}
                for dimension, value in SEARCH_TERM.findall(terms):
                    if dimension != "MetricName":
                        values.setdefault(dimension, set()).add(value)
                yield "search", metric, tuple(dimensions), values


def bodies(policy: Policy) -> Iterator[tuple[str, dict[str, Any]]]:
    for team in policy.teams:
        yield team, dashboards.team_body(policy, team, region=REGION)
    yield "overview", dashboards.overview_body(policy, WATCHED, region=REGION)


def known_values(policy: Policy) -> dict[str, set[str]]:
    return {
        names.DIMENSION_TEAM: set(policy.teams),
        names.DIMENSION_APP: {app for team in policy.teams.values() for app in team.apps},
        names.DIMENSION_MODEL: set(policy.models),
        names.DIMENSION_ENV: {app.env for team in policy.teams.values() for app in team.apps.values()},
        names.DIMENSION_REASON: {rule.name for rule in policy.rules} | {StoreUnavailableError.code},
        names.DIMENSION_RULE: {rule.name for rule in policy.rules if rule.is_budget},
    }


@pytest.mark.parametrize("lost", [(), ("app",), ("app", "model")], ids=["full", "app-collapsed", "model-collapsed"])
def test_every_paymaster_metric_on_a_dashboard_is_one_the_code_writes_with_its_dimensions(
    policy: Policy, lost: tuple[str, ...]
) -> None:
    policy = collapsed(policy, lost) if lost else policy
    writes = emitted(policy) | {(names.METRIC_PROJECTED_SPEND, names.PROJECTION_DIMENSIONS)}
    values = known_values(policy)
    assert metric_dimensions(policy).collapsed == lost
    seen = set()
    for _, body in bodies(policy):
        for _kind, metric, dimensions, filters in metric_queries(body):
            assert (metric, dimensions) in writes, (metric, dimensions)
            for dimension, used in filters.items():
                assert dimension in dimensions
                # A collapsed dimension holds `_all` only: nothing may filter or group on it.
                assert dimension not in lost, (metric, dimension)
                assert used - {"*"} <= values[dimension], (dimension, used)
            seen.add(metric)
    # Every request metric is drawn somewhere (cost through the spend lines).
    assert set(names.REQUEST_METRICS) <= seen


def test_the_code_writes_each_request_metric_under_the_request_dimensions(policy: Policy) -> None:
    streams = emitted(policy)
    assert {(metric, names.REQUEST_DIMENSIONS) for metric in names.REQUEST_METRICS} <= streams
    assert (names.METRIC_DENIALS, names.DENIAL_DIMENSIONS) in streams
    assert (names.METRIC_PROVIDER_ERRORS, names.PROVIDER_ERROR_DIMENSIONS) in streams


def spend_graphs(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        widget["properties"]["title"].split(":")[0]: widget["properties"]
        for widget in body["widgets"]
        if "vs cap" in widget["properties"].get("title", "")
    }


def test_each_team_draws_each_cost_budget_it_counts_in_against_the_policy_s_cap(policy: Policy) -> None:
    search = spend_graphs(dashboards.team_body(policy, "search", region=REGION))
    support = spend_graphs(dashboards.team_body(policy, "support", region=REGION))

    assert set(search) == {"search-monthly", "dev-daily"}
    assert set(support) == {"support-monthly"}
    monthly = search["search-monthly"]
    assert monthly["annotations"]["horizontal"][0]["value"] == 2000
    assert {a["value"] for a in monthly["annotations"]["horizontal"][1:]} == {1000, 1600, 2000}
    assert support["support-monthly"]["annotations"]["horizontal"][0]["value"] == 500
    # dev-daily is $5 a day per team and app: search's dev app, daily sums.
    daily = search["dev-daily"]
    assert daily["period"] == 86_400
    assert daily["annotations"]["horizontal"][0]["value"] == 5
    (line,) = [row[0] for row in daily["metrics"]]
    assert 'app="ranker-dev"' in line["expression"]
    assert 'env="dev"' in line["expression"]
    assert line["label"] == "spent: dev-daily (app=ranker-dev)"
    assert "visible" not in line


def test_month_to_date_spend_sums_the_latest_month_s_hourly_cost_in_usd(policy: Policy) -> None:
    monthly = spend_graphs(dashboards.team_body(policy, "search", region=REGION))["search-monthly"]
    by_id = {row[0]["id"]: row[0] for row in monthly["metrics"] if isinstance(row[0], dict)}

    assert by_id["c0"]["expression"] == (
        "SUM(SEARCH('{paymaster,team,app,model,env} MetricName=\"CostMicroUsd\" team=\"search\"', 'Sum', 3600))"
        " / 1000000"
    )
    assert by_id["mtd0"]["expression"] == "RUNNING_SUM(IF(ym0 == MAX(ym0), c0, 0))"
    assert by_id["ym0"]["expression"] == "YEAR(c0) * 12 + MONTH(c0)"
    assert by_id["c0"]["visible"] is False
    assert "visible" not in by_id["mtd0"]


def test_the_forecast_line_reads_the_projection_of_a_bucket_that_is_the_team_s_own(policy: Policy) -> None:
    graphs = spend_graphs(dashboards.team_body(policy, "search", region=REGION))
    (projection,) = [row for row in graphs["search-monthly"]["metrics"] if isinstance(row[0], str)]
    assert projection[:6] == [
        names.METRICS_NAMESPACE,
        names.METRIC_PROJECTED_SPEND,
        names.DIMENSION_TEAM,
        "search",
        names.DIMENSION_RULE,
        "search-monthly",
    ]
    assert projection[6]["stat"] == "Maximum"
    # A bucket per app is not the team's own: no projection under (team, rule) stands for it.
    assert all(isinstance(row[0], dict) for row in graphs["dev-daily"]["metrics"])


def test_past_the_stream_budget_the_team_dashboard_leaves_out_what_collapsed_and_says_why(policy: Policy) -> None:
    policy = collapsed(policy, (names.DIMENSION_APP,))
    body = dashboards.team_body(policy, "search", region=REGION)
    titles = [widget["properties"].get("title", "") for widget in body["widgets"]]

    assert not [title for title in titles if title.startswith("Cost by app")]
    assert [title for title in titles if title.startswith("Cost by model")]
    # dev-daily is per app: its buckets cannot be told apart any more.
    assert set(spend_graphs(body)) == {"search-monthly"}
    note = body["widgets"][0]["properties"]["markdown"]
    assert "collapses app" in note
    assert "`dev-daily` is not drawn" in note


def test_the_overview_draws_every_team_s_budgets_as_a_share_of_their_caps(policy: Policy) -> None:
    body = dashboards.overview_body(policy, WATCHED, region=REGION)
    (shares,) = [w["properties"] for w in body["widgets"] if w["properties"].get("title", "").startswith("Spend as %")]
    labels = {row[0]["label"]: row[0]["expression"] for row in shares["metrics"] if "visible" not in row[0]}

    assert set(labels) == {"search: search-monthly", "search: dev-daily (app=ranker-dev)", "support: support-monthly"}
    assert labels["support: support-monthly"] == "100 * mtd2 / 500.0"
    assert shares["annotations"]["horizontal"][0]["value"] == 100


def test_the_overview_watches_every_function_table_and_dead_letter_queue_it_is_given(policy: Policy) -> None:
    body = json.dumps(dashboards.overview_body(policy, WATCHED, region=REGION))
    for metric, dimension, name in [
        ("Duration", "FunctionName", "gw"),
        ("ConcurrentExecutions", "FunctionName", "ledger"),
        ("TransactionConflict", "TableName", "counters"),
        ("WriteThrottleEvents", "TableName", "counters"),
        ("ApproximateNumberOfMessagesVisible", "QueueName", "dlq"),
        ("5XXError", "ApiName", "Api"),
    ]:
        assert f'"{metric}", "{dimension}", "{name}"' in body, metric


def test_every_widget_names_its_region(policy: Policy) -> None:
    for _, body in bodies(policy):
        assert {w["properties"]["region"] for w in body["widgets"] if w["type"] == "metric"} == {REGION}


# --- in the synthesised gateway stack -----------------------------------------------------------


def rendered_body(value: Any) -> dict[str, Any]:
    """A dashboard body as CloudFormation will write it, each reference as `<logical id>`."""
    if isinstance(value, str):
        body: dict[str, Any] = json.loads(value)
        return body
    separator, parts = value["Fn::Join"]
    text = separator.join(
        part if isinstance(part, str) else f"<{part.get('Ref') or next(iter(part.values()))}>" for part in parts
    )
    rendered: dict[str, Any] = json.loads(text)
    return rendered


def test_the_gateway_stack_has_a_dashboard_per_team_and_an_overview(
    gateway_template: Template, paymaster: Paymaster, policy: Policy
) -> None:
    deployed = gateway_template.find_resources("AWS::CloudWatch::Dashboard")
    by_name = {d["Properties"]["DashboardName"]: d["Properties"]["DashboardBody"] for d in deployed.values()}
    stack = paymaster.gateway.stack_name
    assert set(by_name) == {f"{stack}-{team}" for team in policy.teams} | {f"{stack}-overview"}
    team = rendered_body(by_name[f"{stack}-search"])
    assert team["widgets"] == dashboards.team_body(policy, "search", region="<AWS::Region>")["widgets"]


def test_with_app_and_model_collapsed_only_the_team_wide_views_remain(policy: Policy) -> None:
    body = dashboards.team_body(
        collapsed(policy, (names.DIMENSION_APP, names.DIMENSION_MODEL)), "search", region=REGION
    )
    titles = [widget["properties"].get("title", "") for widget in body["widgets"]]

    assert not [title for title in titles if title.startswith("Cost by")]
    assert set(spend_graphs(body)) == {"search-monthly"}
    assert "collapses app, model" in body["widgets"][0]["properties"]["markdown"]


def test_the_overview_watches_every_function_of_the_gateway_and_every_table_and_dead_letter_queue_of_the_state(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    (overview,) = [
        d["Properties"]["DashboardBody"]
        for d in gateway_template.find_resources("AWS::CloudWatch::Dashboard").values()
        if d["Properties"]["DashboardName"].endswith("-overview")
    ]
    parts = [part for part in overview["Fn::Join"][1] if not isinstance(part, str)]
    referenced = json.dumps(parts)
    for function in operational_alarms.functions_of(paymaster.gateway):
        assert json.dumps({"Ref": logical_id(function)}) in referenced
    state = paymaster.state
    # A state resource arrives through the SSM parameter the state stack writes its name or ARN
    # to (state_parameters): the overview names the parameter, never an export.
    for table in operational_alarms.tables_of(state):
        assert json.dumps(import_of(state_template, logical_id(table), None)) in referenced
    ssm_parameters = {
        parameter["Properties"]["Name"]: parameter["Properties"]["Value"]
        for parameter in state_template.find_resources("AWS::SSM::Parameter").values()
    }
    for queue in operational_alarms.dead_letter_queues_of(state):
        (name,) = [n for n, v in ssm_parameters.items() if v == {"Fn::GetAtt": [logical_id(queue), "Arn"]}]
        assert name.replace("/", "").replace("-", "").replace("_", "") in referenced.replace("-", "").replace("_", "")
    assert "Fn::ImportValue" not in referenced


def many_teams(policy: Policy, copies: int) -> Policy:
    """The demo's teams `copies` times over, search with a daily budget before its monthly one:
    a search team's overview rows are 2, then 4 (then dev-daily's 2 while `app` is not collapsed),
    so that a graph's 100th row falls inside a monthly line unless lines are kept whole."""
    data = policy.model_dump(mode="json")
    data["rules"].insert(
        0, {"name": "search-daily", "when": {"team": "search"}, "limit": 50, "unit": "cost_per_day", "per": ["team"]}
    )
    return Policy.model_validate(copied_teams(data, copies))


IDENTIFIER = re.compile(r"\b[a-z]\w*\b")


@pytest.mark.parametrize("copies", [1, 13])
def test_every_expression_reads_only_ids_of_its_own_graph(policy: Policy, copies: int) -> None:
    big = many_teams(policy, copies)
    graphs = 0
    for name, body in bodies(big):
        for widget in body["widgets"]:
            rows = widget["properties"].get("metrics", [])
            assert len(rows) <= 500, (name, widget["properties"]["title"])
            ids = {row[-1]["id"] for row in rows if isinstance(row[-1], dict) and "id" in row[-1]}
            for row in rows:
                if isinstance(row[0], dict) and not row[0]["expression"].startswith("SELECT"):
                    # Quoted text is a SEARCH's query and stat; the rest names functions (upper case) and ids.
                    unquoted = re.sub(r"'[^']*'", "", row[0]["expression"])
                    assert set(IDENTIFIER.findall(unquoted)) <= ids, (name, row[0])
            graphs += 1
    assert graphs


def test_the_overview_keeps_each_line_s_rows_in_one_graph_of_at_most_a_hundred(policy: Policy) -> None:
    big = many_teams(policy, 13)
    body = dashboards.overview_body(big, WATCHED, region=REGION)
    shares = [
        w["properties"]["metrics"] for w in body["widgets"] if w["properties"].get("title", "").startswith("Spend as %")
    ]

    # 26 teams collapse `app`, so dev-daily is not drawn: 13 × (2 + 4) + 13 × 4 = 130 rows.
    assert [len(rows) for rows in shares] == [98, 32]
    drawn = [row[0]["label"] for rows in shares for row in rows if "visible" not in row[0]]
    dimensions = metric_dimensions(big)
    assert drawn == [
        f"{team}: {line.label}" for team in big.teams for line in dashboards.spend_lines(big, team, dimensions)[0]
    ]


def test_a_search_holds_only_policy_names_and_ors_each_value_with_its_dimension() -> None:
    query = dashboards.search_query("CostMicroUsd", names.REQUEST_DIMENSIONS, {"model": ["a", "b"], "team": ["t"]})

    assert query.endswith('MetricName="CostMicroUsd" (model="a" OR model="b") team="t"')
    for value in ("it's", 'say "x"', "a b", "x)"):
        with pytest.raises(ValueError, match="not a policy name"):
            dashboards.search_query("CostMicroUsd", names.REQUEST_DIMENSIONS, {"app": [value]})


def with_long_models(policy: Policy, names_: list[str]) -> dict[str, Any]:
    """The policy's data with models of these (long) names, priced as gpt-4o-mini, for search."""
    data = policy.model_dump(mode="json")
    for model in names_:
        data["models"][model] = data["models"]["gpt-4o-mini"]
    data["teams"]["search"]["models"] += names_
    return data


def test_a_budget_whose_search_cannot_fit_in_cloudwatch_s_limit_is_left_out_and_said(policy: Policy) -> None:
    extra = [f"model-with-a-long-name-{i:02}-" + "x" * 100 for i in range(8)]
    data = with_long_models(policy, extra)
    data["rules"].append(
        {"name": "long-models", "when": {"team": "search", "model": extra}, "limit": 9, "unit": "cost_per_month"}
    )
    body = dashboards.team_body(Policy.model_validate(data), "search", region=REGION)

    assert "long-models" not in spend_graphs(body)
    assert (
        "`long-models` is not drawn: its metric search names more values than"
        in body["widgets"][0]["properties"]["markdown"]
    )


def test_a_budget_is_drawn_whole_or_not_at_all_when_only_some_buckets_fit_the_search_limit(policy: Policy) -> None:
    extra = [f"m{i}-" + "x" * 115 for i in range(7)]
    data = with_long_models(policy, extra)
    data["teams"]["search"]["apps"]["ranker-batch-nightly-rebuild"] = {
        "env": "prod",
        "principals": [{"name": "search-nightly", "arn": "arn:aws:iam::111111111111:role/search-nightly"}],
    }
    data["rules"].append(
        {"name": "long", "when": {"model": extra}, "per": ["team", "app"], "limit": 9, "unit": "cost_per_month"}
    )
    big = Policy.model_validate(data)
    lengths = {
        app: len(
            dashboards.search(
                names.METRIC_COST,
                names.REQUEST_DIMENSIONS,
                {"team": ["search"], "app": [app], "model": extra},
                "Sum",
                3600,
            )
        )
        for app in ("ranker", "ranker-batch-nightly-rebuild")
    }
    assert lengths["ranker"] <= dashboards.SEARCH_QUERY_MAX < lengths["ranker-batch-nightly-rebuild"]

    body = dashboards.team_body(big, "search", region=REGION)
    overview = json.dumps(dashboards.overview_body(big, WATCHED, region=REGION))

    assert "long" not in spend_graphs(body)
    assert body["widgets"][0]["properties"]["markdown"].count("`long` is not drawn") == 1
    assert "search: long" not in overview
