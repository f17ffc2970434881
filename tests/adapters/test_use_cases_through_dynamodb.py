"""A few use-case tests of `tests/services` again, end to end through the DynamoDB store on the
serialised stand-in instead of the in-memory one: each takes its store as the `store` fixture,
which this directory's conftest makes a DynamoDBCounterStore. They are the ones whose holds
reach the store in a shape the contract suite does not already send — planned from a policy
across windows, refused and planned again, charged by the sweeper through the held-by-expiry
index, re-reserved for a fallback, reserved holding nothing — so that the two stores are shown to agree on them too."""

from tests.services.test_admission import (
    test_a_crashed_request_no_rule_matches_is_charged_its_reservation_by_the_sweeper,
    test_a_request_no_rule_matches_is_reserved_holding_nothing_and_settled_once,
    test_crashed_request_s_hold_is_charged_by_the_sweeper_after_expiry,
    test_downgrade_past_the_threshold_reserves_at_the_cheaper_price,
    test_missing_max_tokens_shrinks_to_what_the_budget_affords,
    test_month_boundary_follows_the_rule_s_time_zone,
    test_stream_cut_after_output_is_charged_the_delivered_text_never_zero,
)
from tests.services.test_chat_routing import test_a_fallback_model_is_held_at_its_own_price_before_it_is_called

__all__ = [
    "test_a_crashed_request_no_rule_matches_is_charged_its_reservation_by_the_sweeper",
    "test_a_fallback_model_is_held_at_its_own_price_before_it_is_called",
    "test_a_request_no_rule_matches_is_reserved_holding_nothing_and_settled_once",
    "test_crashed_request_s_hold_is_charged_by_the_sweeper_after_expiry",
    "test_downgrade_past_the_threshold_reserves_at_the_cheaper_price",
    "test_missing_max_tokens_shrinks_to_what_the_budget_affords",
    "test_month_boundary_follows_the_rule_s_time_zone",
    "test_stream_cut_after_output_is_charged_the_delivered_text_never_zero",
]
