"""`paymaster local tick`'s own answers: which schedule it runs, the time it runs it as, and a
clear line when it cannot."""

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from paymaster.domain.policy import Policy
from paymaster.domain.schedules import schedules
from paymaster_local.cli import add_arguments, run
from paymaster_local.tick import TickError, find_schedule, parse_at
from tests.policies import demo_raw

SCHEDULES = schedules(Policy.model_validate(demo_raw()))


def test_a_team_s_schedule_is_found_by_its_job_and_team() -> None:
    assert find_schedule(SCHEDULES, "month-close", "support").name == "MonthCloseSupport"
    assert find_schedule(SCHEDULES, "forecast", None).name == "ForecastDaily"
    assert find_schedule(SCHEDULES, "sweeper", None).name == "SweeperEveryMinute"


@pytest.mark.parametrize(
    ("job", "team", "says"),
    [
        ("digest", None, "the digest runs per team: name one with --team"),
        ("forecast", "search", "the forecast runs for every team: it takes no --team"),
        ("month-close", "nobody", "no month-close schedule for team 'nobody'; the policy has one for: search, support"),
    ],
)
def test_a_schedule_the_policy_does_not_define_is_refused_with_what_it_has(
    job: str, team: str | None, says: str
) -> None:
    with pytest.raises(TickError) as refused:
        find_schedule(SCHEDULES, job, team)  # type: ignore[arg-type]
    assert str(refused.value) == says


def test_a_team_without_a_digest_has_no_digest_to_tick() -> None:
    raw = demo_raw()
    raw["teams"]["support"]["alerts"]["digest_at"] = None

    with pytest.raises(TickError, match="no digest schedule for team 'support'; the policy has one for: search"):
        find_schedule(schedules(Policy.model_validate(raw)), "digest", "support")


def test_at_takes_an_iso_time_with_its_offset_and_refuses_one_without() -> None:
    assert parse_at("2026-12-01T00:05:00-08:00") == datetime(2026, 12, 1, 8, 5, tzinfo=UTC)
    assert parse_at("2026-12-01T08:05Z") == datetime(2026, 12, 1, 8, 5, tzinfo=UTC)
    with pytest.raises(TickError, match="no UTC offset"):
        parse_at("2026-12-01T00:05")
    with pytest.raises(TickError, match="not an ISO 8601 time"):
        parse_at("tomorrow")


def test_tick_without_a_running_stack_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    code = run(parser.parse_args(["tick", "forecast", "--state-dir", str(tmp_path)]))

    err = capsys.readouterr().err
    assert code == 2
    assert (
        err
        == f"paymaster local tick: no local stack is running under {tmp_path} (no {tmp_path}/stack.json): `make run`\n"
    )


def test_the_state_dir_may_come_before_or_after_tick(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    before = parser.parse_args(["--state-dir", str(tmp_path), "tick", "sweeper"])
    after = parser.parse_args(["tick", "sweeper", "--state-dir", str(tmp_path)])
    neither = parser.parse_args(["tick", "sweeper"])

    assert before.state_dir == after.state_dir == tmp_path
    assert neither.state_dir == Path(".paymaster/local")


def test_a_clock_speed_is_a_positive_number() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    assert parser.parse_args(["--clock-speed", "1440"]).clock_speed == 1440
    assert parser.parse_args([]).clock_speed == 1
    for wrong in ("0", "-2", "fast"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--clock-speed", wrong])
