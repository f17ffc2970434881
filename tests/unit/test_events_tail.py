"""`paymaster events tail`: what it prints for what a queue may hold, and what it needs."""

import json
from pathlib import Path

import pytest

from paymaster import cli, names


def test_a_message_that_is_not_an_event_is_shown_as_such() -> None:
    assert cli.event_line("hello") == "(not an EventBridge event) hello"
    assert cli.event_line(json.dumps({"detail-type": "CostRecorded", "detail": "x"})) == "CostRecorded (no detail)"


def test_an_event_of_a_detail_type_it_does_not_know_still_gets_its_line() -> None:
    body = {"detail-type": "SomethingNew", "time": "2026-11-29T14:00:00Z", "detail": {"team": "search"}}

    assert cli.event_line(json.dumps(body)) == "2026-11-29T14:00:00Z  SomethingNew        None  search/None  None"


def test_a_threshold_crossed_is_named_by_its_crossing_not_a_request() -> None:
    sample = (
        Path(__file__).resolve().parents[2] / "events" / "published" / "budget-threshold-crossed.json"
    ).read_text()
    detail = json.loads(sample)["detail"]

    line = cli.event_line(sample)

    assert names.BUDGET_THRESHOLD_CROSSED in line
    assert detail["crossing_id"] in line
    assert f"{detail['rule']} reached {detail['threshold_pct']} % ({detail['scope']})" in line
    assert "None" not in line


def test_tail_without_a_queue_says_what_it_needs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(names.ENV_EVENTS_QUEUE_URL, raising=False)

    with pytest.raises(SystemExit) as exited:
        cli.main(["events", "tail"])

    assert exited.value.code == 2
    assert names.ENV_EVENTS_QUEUE_URL in capsys.readouterr().err
