"""`paymaster events tail`: what it prints for what a queue may hold, and what it needs."""

import json

import pytest

from paymaster import cli, names


def test_a_message_that_is_not_an_event_is_shown_as_such() -> None:
    assert cli.event_line("hello") == "(not an EventBridge event) hello"
    assert cli.event_line(json.dumps({"detail-type": "CostRecorded", "detail": "x"})) == "CostRecorded (no detail)"


def test_an_event_of_a_detail_type_it_does_not_know_still_gets_its_line() -> None:
    body = {"detail-type": "BudgetThresholdCrossed", "time": "2026-11-29T14:00:00Z", "detail": {"team": "search"}}

    assert cli.event_line(json.dumps(body)) == "2026-11-29T14:00:00Z  BudgetThresholdCrossed  None  search/None  None"


def test_tail_without_a_queue_says_what_it_needs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(names.ENV_EVENTS_QUEUE_URL, raising=False)

    with pytest.raises(SystemExit) as exited:
        cli.main(["events", "tail"])

    assert exited.value.code == 2
    assert names.ENV_EVENTS_QUEUE_URL in capsys.readouterr().err
