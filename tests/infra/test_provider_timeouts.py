"""Providers must give up before the gateway function is killed."""

import pytest

from paymaster.adapters.policy_file import load_policy
from paymaster.domain.policy import Timeouts
from paymaster_infra.config import DEFAULT_POLICY_FILE, REPO_ROOT
from paymaster_infra.gateway_function import SETTLE_MARGIN_S, check_provider_timeouts
from paymaster_infra.lambda_defaults import TIMEOUT

DEMO = load_policy(REPO_ROOT / DEFAULT_POLICY_FILE)


def test_the_demo_policy_fits_the_function_timeout() -> None:
    check_provider_timeouts(DEMO, TIMEOUT.to_seconds())


def test_a_total_timeout_too_close_to_the_function_s_is_refused_at_synth() -> None:
    limit = TIMEOUT.to_seconds()
    slow = DEMO.providers["openai"].model_copy(update={"timeouts": Timeouts(total_s=limit - SETTLE_MARGIN_S + 1)})
    policy = DEMO.model_copy(update={"providers": DEMO.providers | {"openai": slow}})

    with pytest.raises(ValueError, match=r"provider .openai.: timeouts\.total_s 286 s leaves less than 15 s"):
        check_provider_timeouts(policy, limit)
