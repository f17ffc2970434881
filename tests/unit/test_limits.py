"""Which counters a request touches, what it reserves on each, and which refusal the caller hears."""

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from paymaster.domain.chat import Usage
from paymaster.domain.limits import (
    Hold,
    Refusal,
    RequestFacts,
    actual_amount,
    affordable_output_tokens,
    amount_text,
    bucket,
    downgrade_threshold,
    matches,
    max_cost,
    plan_holds,
    reserve_amount,
    tightest,
)
from paymaster.domain.policy import Model, Rule, When
from tests.policies import policy_with

NOW = datetime(2026, 11, 29, 18, 25, tzinfo=UTC)
MODELS = policy_with([]).models
GPT_4O_MINI = MODELS["gpt-4o-mini"]  # $0.15/M in, $0.60/M out, cache read $0.075/M
CLAUDE_HAIKU = MODELS["claude-haiku"]  # $0.80/M in, $4/M out, cache write $1/M, 8_192 output max
NOVA_LITE = MODELS["nova-lite"]  # $0.06/M in, $0.24/M out
SEARCH = RequestFacts(team="search", app="ranker", env="prod", model="gpt-4o-mini")


def rule(**fields: Any) -> Rule:
    return Rule.model_validate({"name": "r", "limit": 1000, "unit": "tokens_per_day"} | fields)


def refused(r: Rule, used: int, *, amount: int = 1, now: datetime = NOW) -> Refusal:
    (hold,) = plan_holds([r], SEARCH, GPT_4O_MINI, input_tokens=0, output_tokens=0, now=now, check_downgrades=False)
    return Refusal(Hold(r, hold.bucket, hold.window, amount, r.cap), used)


def model(input_price: int, output_price: int, cache_write: int | None = None, max_output: int = 100_000) -> Model:
    return Model.model_validate(
        {
            "deployments": [{"provider": "openai", "model": "m"}],
            "price": {
                "input": input_price,
                "output": output_price,
                "cache_write": cache_write,
                "source": "test",
                "as_of": date(2026, 11, 29),
            },
            "max_output_tokens": max_output,
            "context_window": 1_000_000,
        }
    )


# matches


def test_empty_when_matches_every_request() -> None:
    assert matches(When(), SEARCH)
    assert matches(When(), RequestFacts(team="x", app="y", env="z", model="m", user=None))


def test_a_list_matches_any_of_its_values() -> None:
    when = When(team=["search", "support"])

    assert matches(when, RequestFacts(team="support", app="assistant", env="prod", model="claude-haiku"))
    assert not matches(when, RequestFacts(team="billing", app="assistant", env="prod", model="claude-haiku"))


def test_a_single_value_is_read_as_a_one_item_list() -> None:
    when = When.model_validate({"team": "search"})

    assert when.team == ["search"]
    assert matches(when, SEARCH)


def test_every_key_given_must_match() -> None:
    when = When(team=["search"], env=["dev"])

    assert not matches(when, SEARCH)  # search, but prod
    assert matches(when, RequestFacts(team="search", app="ranker-dev", env="dev", model="gpt-4o-mini"))


def test_a_user_rule_does_not_match_a_request_without_a_user() -> None:
    when = When(user=["alice"])

    assert not matches(when, SEARCH)
    assert matches(when, RequestFacts(team="search", app="ranker", env="prod", model="gpt-4o-mini", user="alice"))


def test_metadata_matches_any_listed_value_and_not_a_missing_key() -> None:
    when = When(metadata={"project": ["alpha", "beta"]})

    def facts(metadata: dict[str, str]) -> RequestFacts:
        return RequestFacts(team="search", app="ranker", env="prod", model="gpt-4o-mini", metadata=metadata)

    assert matches(when, facts({"project": "beta", "other": "x"}))
    assert not matches(when, facts({"project": "gamma"}))
    assert not matches(when, facts({}))


# bucket


def test_rule_without_per_has_one_shared_bucket() -> None:
    assert bucket(rule(), SEARCH) == "*"


def test_bucket_names_each_per_dimension_in_order() -> None:
    facts = RequestFacts(team="search", app="ranker", env="prod", model="gpt-4o-mini", user="alice")

    assert bucket(rule(per=["team", "user"]), facts) == "team=search/user=alice"
    assert bucket(rule(per=["model", "env", "app"]), facts) == "model=gpt-4o-mini/env=prod/app=ranker"


def test_requests_without_a_user_share_the_user_dash_bucket() -> None:
    assert bucket(rule(per=["team", "user"]), SEARCH) == "team=search/user=-"


# amounts per measure


def test_a_request_counts_one_on_a_requests_rule() -> None:
    r = rule(unit="requests_per_minute")

    assert reserve_amount(r, GPT_4O_MINI, 1_000, 500) == 1
    assert actual_amount(r, GPT_4O_MINI, Usage(1_000, 20)) == 1


def test_tokens_rule_reserves_input_plus_output_limit_and_settles_every_token() -> None:
    r = rule(unit="tokens_per_minute")

    assert reserve_amount(r, GPT_4O_MINI, 1_000, 500) == 1_500
    # Cache tokens are tokens too: 1_000 + 20 + 200 + 100.
    assert actual_amount(r, GPT_4O_MINI, Usage(1_000, 20, 200, 100)) == 1_320


def test_cost_rule_reserves_the_maximum_cost_in_micro_usd() -> None:
    # 1_000 × $0.15/M + 500 × $0.60/M = 150 + 300 = 450 µUSD.
    assert reserve_amount(rule(unit="cost_per_month", limit=2000), GPT_4O_MINI, 1_000, 500) == 450


def test_cost_rule_settles_the_actual_cost_with_cache_prices() -> None:
    # 1_000 × 0.15 + 500 × 0.60 + 2_000 cache reads × 0.075 + 100 cache writes at input (0.15) = 615 µUSD.
    usage = Usage(1_000, 500, cache_read_tokens=2_000, cache_write_tokens=100)

    assert actual_amount(rule(unit="cost_per_month", limit=2000), GPT_4O_MINI, usage) == 615


def test_max_cost_prices_input_at_the_dearer_cache_write_price() -> None:
    # Haiku: input $0.80/M but cache writes $1/M. 1_000 × 1 + 500 × 4 = 3_000 µUSD, not 2_800.
    assert max_cost(CLAUDE_HAIKU, 1_000, 500) == 3_000


def test_max_cost_prices_input_at_the_input_price_when_cache_writes_are_cheaper() -> None:
    # 1_000 × $2/M + 0 output = 2_000 µUSD; the $1/M cache-write price never lowers the maximum.
    assert max_cost(model(2_000_000, 0, cache_write=1_000_000), 1_000, 0) == 2_000


def test_max_cost_without_a_cache_write_price_uses_the_input_price() -> None:
    # 1_000 × 0.06 + 500 × 0.24 = 60 + 120 = 180 µUSD.
    assert max_cost(NOVA_LITE, 1_000, 500) == 180


def test_amount_text_is_usd_for_cost_and_a_count_otherwise() -> None:
    assert amount_text(rule(unit="cost_per_month", limit=2000), 12_500_000) == "12.5"
    assert amount_text(rule(unit="tokens_per_day"), 1_500) == "1500"


# plans


def test_plan_holds_one_hold_per_matching_rule_in_its_window() -> None:
    policy = policy_with(
        [
            {"name": "search-rpm", "when": {"team": "search"}, "limit": 600, "unit": "requests_per_minute"},
            {"name": "support-rpm", "when": {"team": "support"}, "limit": 600, "unit": "requests_per_minute"},
            {"name": "monthly", "limit": 2000, "unit": "cost_per_month", "time_zone": "Asia/Tokyo"},
        ]
    )

    holds = plan_holds(
        policy.rules, SEARCH, GPT_4O_MINI, input_tokens=1_000, output_tokens=500, now=NOW, check_downgrades=False
    )

    assert [(h.rule.name, h.window.id, h.amount, h.cap) for h in holds] == [
        ("search-rpm", "2026-11-29T18:25Z", 1, 600),
        ("monthly", "2026-11", 450, 2_000_000_000),
    ]


def test_downgrade_check_caps_a_budget_at_its_downgrade_threshold() -> None:
    monthly = rule(
        unit="cost_per_month", limit=2000, actions=[{"at": 50, "alert": True}, {"at": 80, "downgrade_to": "nova-lite"}]
    )

    def cap(check: bool) -> int | None:
        (hold,) = plan_holds(
            [monthly], SEARCH, GPT_4O_MINI, input_tokens=0, output_tokens=1, now=NOW, check_downgrades=check
        )
        return hold.cap

    assert downgrade_threshold(monthly) == (1_600_000_000, "nova-lite")
    assert (cap(True), cap(False)) == (1_600_000_000, 2_000_000_000)


def test_shadow_rule_that_would_refuse_is_held_without_a_cap() -> None:
    (hold,) = plan_holds(
        [rule(name="shadowed", mode="shadow")],
        SEARCH,
        GPT_4O_MINI,
        input_tokens=10,
        output_tokens=10,
        now=NOW,
        check_downgrades=False,
        unchecked=frozenset({"shadowed"}),
    )

    assert (hold.amount, hold.cap) == (20, None)


# refusals


def test_refusal_remaining_is_cap_minus_used_and_never_negative() -> None:
    r = rule(limit=1000)

    assert refused(r, used=400).remaining == 600
    assert refused(r, used=1_200).remaining == 0


def test_refusal_kind_is_budget_for_budgets_and_rate_limit_otherwise() -> None:
    assert refused(rule(unit="cost_per_month", limit=5), used=0).kind == "budget"
    assert refused(rule(unit="tokens_per_month"), used=0).kind == "budget"
    assert refused(rule(unit="tokens_per_minute"), used=0).kind == "rate_limit"


def test_tightest_prefers_the_refusal_whose_window_ends_last() -> None:
    per_minute = refused(rule(name="rpm", unit="requests_per_minute", limit=1), used=1)  # ends 18:26 UTC, 0 left
    monthly = refused(rule(name="monthly", unit="cost_per_month", limit=5), used=4_000_000)  # ends 1 Dec, $1 left

    assert tightest([per_minute, monthly]) is monthly
    assert tightest([monthly, per_minute]) is monthly


def test_tightest_compares_window_ends_as_instants_across_zones() -> None:
    # November ends at 15:00 UTC on 30 Nov in Tokyo, at 08:00 UTC on 1 Dec in Los Angeles.
    tokyo = refused(rule(name="tokyo", unit="cost_per_month", limit=5, time_zone="Asia/Tokyo"), used=5_000_000)
    los_angeles = refused(rule(name="la", unit="cost_per_month", limit=5, time_zone="America/Los_Angeles"), used=0)

    assert tightest([tokyo, los_angeles]) is los_angeles


def test_tightest_among_equal_windows_is_the_one_with_least_remaining() -> None:
    roomy = refused(rule(name="roomy", unit="cost_per_month", limit=5), used=1_000_000)  # $4 left
    nearly_spent = refused(rule(name="nearly", unit="cost_per_month", limit=5), used=4_900_000)  # $0.10 left

    assert tightest([roomy, nearly_spent]) is nearly_spent
    assert tightest([nearly_spent, roomy]) is nearly_spent


# affordable output


def test_tokens_rule_affords_its_remaining_tokens_minus_the_prompt() -> None:
    # 100_000 tokens a day, 99_000 used: 1_000 left; a 300-token prompt leaves 700 for output.
    r = rule(limit=100_000)

    assert affordable_output_tokens([refused(r, used=99_000)], CLAUDE_HAIKU, 300) == 700


def test_affordable_output_never_exceeds_the_model_limit() -> None:
    r = rule(limit=100_000)

    assert affordable_output_tokens([refused(r, used=0)], CLAUDE_HAIKU, 300) == 8_192


def test_cost_rule_affords_what_its_remaining_micro_dollars_buy() -> None:
    # $1 cap, $0.99 used: 10_000 µUSD left. Input at the dearer cache-write price: 1_000 × $1/M = 1_000 µUSD.
    # Output at $4/M: (10_000 − 1_000) × 10⁶ / 4_000_000 = 2_250 tokens.
    r = rule(unit="cost_per_month", limit=1)

    affordable = affordable_output_tokens([refused(r, used=990_000)], CLAUDE_HAIKU, 1_000)

    assert affordable == 2_250
    assert max_cost(CLAUDE_HAIKU, 1_000, 2_250) == 10_000
    assert max_cost(CLAUDE_HAIKU, 1_000, 2_251) == 10_004


def test_the_smallest_room_of_several_refusals_decides() -> None:
    tokens = refused(rule(name="tokens", limit=100_000), used=99_000)  # 700 output after 300 input
    cost = refused(rule(name="cost", unit="cost_per_month", limit=1), used=998_000)  # 2_000 µUSD: 425 tokens

    assert affordable_output_tokens([tokens, cost], CLAUDE_HAIKU, 300) == 425


def test_a_request_count_refusal_affords_nothing() -> None:
    rpm = refused(rule(name="rpm", unit="requests_per_minute", limit=10), used=10)
    budget = refused(rule(name="budget", unit="cost_per_month", limit=2000), used=0)

    assert affordable_output_tokens([budget, rpm], CLAUDE_HAIKU, 300) == 0


def test_a_prompt_larger_than_the_room_affords_nothing() -> None:
    assert affordable_output_tokens([refused(rule(limit=1_000), used=900)], CLAUDE_HAIKU, 300) == 0
    assert affordable_output_tokens([refused(rule(unit="cost_per_day", limit=1), used=999_999)], CLAUDE_HAIKU, 300) == 0


def test_free_output_does_not_make_an_unaffordable_prompt_affordable() -> None:
    # 1_000 input tokens at $1/M = 1_000 µUSD against 100 µUSD left.
    free_output = model(1_000_000, 0, max_output=4_096)
    r = rule(unit="cost_per_day", limit=Decimal("0.0001"))

    assert affordable_output_tokens([refused(r, used=0)], free_output, 1_000) == 0


@st.composite
def refusals(draw: st.DrawFn, index: int) -> Refusal:
    measure = draw(st.sampled_from(["tokens", "cost"]))
    if measure == "tokens":
        r = rule(name=f"r{index}", unit="tokens_per_day", limit=draw(st.integers(1, 10_000_000)))
    else:
        micro = draw(st.integers(1, 10_000_000_000))
        r = rule(name=f"r{index}", unit="cost_per_month", limit=Decimal(micro) / 1_000_000)
    used = draw(st.integers(0, r.cap + 1_000))
    return refused(r, used=used)


@given(
    refused_by=st.integers(1, 3).flatmap(lambda n: st.tuples(*(refusals(i) for i in range(n)))),
    input_tokens=st.integers(0, 1_000_000),
    input_price=st.integers(0, 100_000_000),
    output_price=st.integers(1, 100_000_000),
    cache_write=st.none() | st.integers(0, 100_000_000),
    max_output=st.integers(1, 200_000),
)
def test_affordable_output_is_the_largest_output_that_fits_every_refused_counter(
    refused_by: tuple[Refusal, ...],
    input_tokens: int,
    input_price: int,
    output_price: int,
    cache_write: int | None,
    max_output: int,
) -> None:
    m = model(input_price, output_price, cache_write, max_output)

    affordable = affordable_output_tokens(refused_by, m, input_tokens)

    def fits_everywhere(output: int) -> bool:
        return all(reserve_amount(refusal.rule, m, input_tokens, output) <= refusal.remaining for refusal in refused_by)

    assert 0 <= affordable <= max_output
    # Shrinking to `affordable` never plans an overspend ...
    assert affordable == 0 or fits_everywhere(affordable)
    # ... and it is the largest output limit that fits.
    assert affordable == max_output or not fits_everywhere(affordable + 1)
