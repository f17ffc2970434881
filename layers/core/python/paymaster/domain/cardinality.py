"""How many CloudWatch metric streams a policy yields, and the dimensions that keep it in budget.

A metric stream is one metric name under one combination of dimension values; CloudWatch bills
each stream that receives data in a month ($0.30 at the first tier). Every value paymaster puts
in a dimension comes from the policy — never the user, a header or the body — so the streams a
policy can yield are counted when it is loaded, as an upper bound:

    requests    12 REQUEST_METRICS × Σ over teams and apps: the models a request can end on
                (an app has one env, so env multiplies nothing)
    denials     Σ over teams and the envs of their apps: the rules that can refuse a request
                of that team and env (its `when` admits the team, the env and one of the team's
                apps in it), + 1 for the store being unavailable
    providers   one ProviderErrors stream per provider

Past `metrics.max_streams` the request dimensions collapse, the same way in every container and
for every team: first `app` becomes COLLAPSED (requests: 12 × Σ teams: envs × models), then
`model` too (12 × Σ teams: envs). Team and env never collapse; if they alone pass the budget the
policy keeps them and the gateway logs by how much at start.

Example, every app in one env: 2 teams × 3 apps × 4 models, 5 rules that name no team, 3
providers → 12 × 24 + 2 × 6 + 3 = 303 streams, within the default 2,000. 40 teams × 10 apps × 6
models, each team with a budget of its own (`when: {team: …}`) and one rule for everyone →
12 × 2,400 + 40 × 3 + 3 = 28,923: past it, `app` collapses → 12 × 240 + 123 = 3,003: still
past, `model` collapses too → 12 × 40 + 123 = 603. A rule counts only for the teams it can
refuse: counted for every team, 40 budgets would add 40 × 40 denial streams that can never
receive data, and collapse dimensions a policy has room for.
"""

from dataclasses import dataclass

from paymaster import names
from paymaster.domain.policy import Policy

# The order in which request dimensions collapse past the budget.
COLLAPSIBLE = (names.DIMENSION_APP, names.DIMENSION_MODEL)


@dataclass(frozen=True, slots=True)
class MetricDimensions:
    """The request dimensions a policy keeps, and the streams it yields with them."""

    collapsed: tuple[str, ...]  # of COLLAPSIBLE, in order: (), ("app",) or ("app", "model")
    streams: int  # the most streams the policy yields with these dimensions
    uncollapsed: int  # ... with none collapsed
    budget: int  # the policy's `metrics.max_streams`

    @property
    def within_budget(self) -> bool:
        return self.streams <= self.budget

    def of_request(self, *, team: str, app: str, model: str, env: str) -> dict[str, str]:
        """The request's values, in names.REQUEST_DIMENSIONS order; a collapsed one is COLLAPSED.

        Example: collapsed ("app",) → {"team": "search", "app": "_all", "model": "gpt-4o", "env": "prod"}.
        """
        collapsed = self.collapsed
        return {
            names.DIMENSION_TEAM: team,
            names.DIMENSION_APP: names.COLLAPSED if names.DIMENSION_APP in collapsed else app,
            names.DIMENSION_MODEL: names.COLLAPSED if names.DIMENSION_MODEL in collapsed else model,
            names.DIMENSION_ENV: env,
        }


def metric_dimensions(policy: Policy) -> MetricDimensions:
    """The fewest collapsed dimensions that keep the policy within `metrics.max_streams`, or all
    of COLLAPSIBLE when even that passes it."""
    budget = policy.metrics.max_streams
    uncollapsed = metric_streams(policy, ())
    for count in range(len(COLLAPSIBLE) + 1):
        collapsed = COLLAPSIBLE[:count]
        streams = metric_streams(policy, collapsed)
        if streams <= budget or count == len(COLLAPSIBLE):
            return MetricDimensions(collapsed, streams, uncollapsed, budget)
    raise AssertionError("the loop returns on its last round")  # pragma: no cover


def metric_streams(policy: Policy, collapsed: tuple[str, ...]) -> int:
    """The most metric streams the policy yields with `collapsed` request dimensions."""
    combinations = 0
    denials = 0
    for team_name, team in policy.teams.items():
        models = len(models_ending(policy, team_name))
        envs = {app.env for app in team.apps.values()}
        for env in envs:
            apps = {name for name, app in team.apps.items() if app.env == env}
            # The rules that can refuse this team's requests in env, and the counter store being
            # unavailable (StoreUnavailableError's code).
            denials += sum(1 for rule in policy.rules if rule.when.can_count(team_name, env, apps)) + 1
        groups = len(envs) if names.DIMENSION_APP in collapsed else len(team.apps)
        combinations += groups * (1 if names.DIMENSION_MODEL in collapsed else models)
    return len(names.REQUEST_METRICS) * combinations + denials + len(policy.providers)


def models_ending(policy: Policy, team: str) -> set[str]:
    """The virtual models a team's request can be served or refused as: the ones it may name,
    the models the rules that can count its requests downgrade to, and the fallbacks of both (a
    fallback's own are not tried)."""
    apps = policy.teams[team].apps
    by_env = {app.env: {name for name, each in apps.items() if each.env == app.env} for app in apps.values()}
    downgrades = {
        action.downgrade_to
        for rule in policy.rules
        if any(rule.when.can_count(team, env, names_in_env) for env, names_in_env in by_env.items())
        for action in rule.actions
        if action.downgrade_to
    }
    named = set(policy.models_for(team)) | downgrades
    return named | {fallback for model in named for fallback in policy.models[model].fallbacks}
