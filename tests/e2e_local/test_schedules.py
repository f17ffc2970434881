"""`paymaster local tick` on a running local stack, as a second shell runs it: the digest of a day
with a call in it lands as an `.eml`, and the month close of that month writes the report that
`paymaster report` prints."""

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openai import OpenAI

from paymaster import cli
from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.adapters.policy_file import load_policy
from paymaster.domain.ledger import Rollup
from paymaster_local.cli import snippet_model
from paymaster_local.resources import LEDGER_TABLE
from paymaster_local.stack import STACK_FILE, LocalStack
from tests.local_aws import local_client

PROFILE = "search-ranker"
TEAM = "search"
LEDGER_WAIT_S = 60
MAIL_WAIT_S = 30


def paymaster_local(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paymaster.cli", "local", *args, "--state-dir", str(stack.state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def tick(stack: LocalStack, *args: str) -> dict[str, Any]:
    done = paymaster_local(stack, "tick", *args)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def called_and_ledgered(stack: LocalStack, openai_for: Any) -> datetime:
    """One call by search, once the runner has put it in the ledger; when it was made."""
    ledger = DynamoDBLedger(local_client("dynamodb", stack.aws_url), LEDGER_TABLE)
    month = Rollup(TEAM, datetime.now(UTC).strftime("%Y-%m"))
    before = ledger.rollup(month).calls
    made = datetime.now(UTC)
    client: OpenAI = openai_for(PROFILE)
    client.chat.completions.create(
        model=snippet_model(load_policy(stack.policy_file), PROFILE),
        messages=[{"role": "user", "content": "a call for the digest"}],
        max_tokens=20,
    )
    deadline = time.monotonic() + LEDGER_WAIT_S
    while ledger.rollup(month).calls <= before:
        assert time.monotonic() < deadline, "the call never reached the ledger"
        time.sleep(0.2)
    return made


def mail_with(subject: str, mail_dir: Path) -> Path:
    deadline = time.monotonic() + MAIL_WAIT_S
    while True:
        for path in sorted(mail_dir.glob("*.eml")) if mail_dir.exists() else []:
            if message_from_bytes(path.read_bytes(), policy=default)["Subject"] == subject:
                return path
        assert time.monotonic() < deadline, f"no .eml with subject {subject!r} in {mail_dir}"
        time.sleep(0.2)


def test_the_stack_tells_a_second_shell_where_it_is(stack: LocalStack) -> None:
    written = json.loads((stack.state_dir / STACK_FILE).read_text())

    assert written["aws_url"] == stack.aws_url
    assert written["environment"]["PAYMASTER_LEDGER_TABLE"] == LEDGER_TABLE


def test_ticking_the_digest_and_the_month_close_mails_the_day_and_writes_the_month_s_report(
    stack: LocalStack, openai_for: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = ZoneInfo("America/Los_Angeles")  # search's
    made = called_and_ledgered(stack, openai_for).astimezone(zone)
    next_morning = datetime.combine(made.date() + timedelta(days=1), clock_time(9, 0), tzinfo=zone)
    month_start = made.replace(day=1, hour=0, minute=45, second=0, microsecond=0)
    close_at = (month_start + timedelta(days=32)).replace(day=1)

    digest = tick(stack, "digest", "--team", TEAM, "--at", next_morning.isoformat())
    closed = tick(stack, "month-close", "--team", TEAM, "--at", close_at.isoformat())

    assert digest["schedule"] == "DigestSearch"
    assert digest["sent"] is True
    assert made.date().isoformat() in digest["subject"]
    eml = mail_with(digest["subject"], stack.mail_dir)
    assert "search-lead@example.com" in str(message_from_bytes(eml.read_bytes(), policy=default)["To"])

    month = made.strftime("%Y-%m")
    assert closed == {
        "schedule": "MonthCloseSearch",
        "scheduled_time": close_at.astimezone(UTC).isoformat(),
        "team": TEAM,
        "month": month,
        "written": True,
        "published": True,
        "earlier_published": [],
    }
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.aws_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    capsys.readouterr()
    assert cli.main(["report", "--table", LEDGER_TABLE, "--team", TEAM, "--month", month]) == 0
    report = capsys.readouterr().out
    assert "ranker" in report


def test_a_tick_for_a_team_without_that_schedule_or_without_a_stack_says_why(stack: LocalStack, tmp_path: Path) -> None:
    unknown = paymaster_local(stack, "tick", "digest", "--team", "nobody")
    no_team = paymaster_local(stack, "tick", "month-close")
    too_early = paymaster_local(stack, "tick", "month-close", "--team", TEAM, "--at", "2026-12-01T00:10-08:00")
    nothing_running = subprocess.run(
        [sys.executable, "-m", "paymaster.cli", "local", "tick", "forecast", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (unknown.returncode, no_team.returncode, too_early.returncode, nothing_running.returncode) == (2, 2, 2, 2)
    assert too_early.stderr.splitlines()[-1] == (
        "paymaster local tick: search's 2026-11 cannot be closed before 2026-12-01T08:45:00+00:00: "
        "its last calls may not be in the ledger yet"
    )
    assert "no digest schedule for team 'nobody'" in unknown.stderr
    assert "name one with --team" in no_team.stderr
    assert "no local stack is running under" in nothing_running.stderr
