"""`make demo` keeps working: throttled, downgraded at 80 %, shrunk, refused at 100 %."""

import re
from pathlib import Path

import pytest

from paymaster_local import demo
from paymaster_local.cli import DEMO_POLICY
from paymaster_local.stack import free_port, local_stack


def test_demo_shows_throttle_downgrade_shrink_and_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with (
        (tmp_path / "gateway.log").open("wb") as log,
        local_stack(DEMO_POLICY, port=free_port(), state_dir=tmp_path, gateway_output=log) as stack,
    ):
        demo.run(stack)

    out = capsys.readouterr().out
    throttled = re.search(r"(\d+) requests answered; request (\d+) is throttled", out)
    assert throttled is not None, out
    assert 60 <= int(throttled[1]) <= 120  # 60 a minute; up to 120 when the burst straddles a minute
    assert "429 rate_limit_exceeded" in out
    assert "served by nova-lite (bedrock-us-east-1/us.amazon.nova-lite-v1:0)" in out
    assert "x-paymaster-downgraded-from: gpt-4o-mini" in out
    shrunk = re.search(r"served by nova-lite with max_tokens (\d+), set by the gateway", out)
    assert shrunk is not None, out
    assert 256 <= int(shrunk[1]) < 5000  # what 100 µUSD buys on nova-lite, not its 5000 maximum
    assert "429 insufficient_quota" in out
    assert "2 budget alarm email(s)" in out
    assert "Subject: [paymaster] search: search-monthly reached 50 % ($1,000.00 of $2,000.00)" in out
    assert "Subject: [paymaster] search: search-monthly reached 80 % ($1,600.00 of $2,000.00)" in out
    for field in (
        "Team:",
        "Rule:",
        "Scope:",
        "Spent:",
        "Cap:",
        "Used:",
        "Resets:",
        "Projected:",
        "Top apps",
        "Top models",
    ):
        assert out.count(field) >= 2, field
    assert "at 80 % (now): requests are downgraded to nova-lite" in out
    assert "'x-should-retry': 'false'" in out
