"""`paymaster ledger`: a team's month of calls from the ledger table, its total, and the CSV."""

import csv
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from paymaster import cli, names
from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.domain.chat import Usage
from paymaster_local.resources import LEDGER_TABLE
from tests.ledger_entries import ADMITTED, DENIAL, ENTRY, fresh_ledger

FALLBACK = replace(
    ENTRY,
    request_id="r2",
    hop=1,
    admitted_at=ADMITTED + timedelta(seconds=3),
    model="nova-lite",
    cost=1_234_567,
    usage=Usage(1000, 2000, 300, 0),
    downgraded_from="gpt-4o",
    user=None,
)


@pytest.fixture
def recorded(dynamodb: DynamoDBWire, aws_url: str, monkeypatch: pytest.MonkeyPatch) -> DynamoDBLedger:
    """A ledger holding two calls of search's in December and one of support's."""
    ledger = fresh_ledger(aws_url, dynamodb)
    for entry in (FALLBACK, ENTRY, replace(ENTRY, request_id="r3", team="support")):
        ledger.record(entry)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv(names.ENV_LEDGER_TABLE, LEDGER_TABLE)
    return ledger


def test_lists_a_teams_calls_for_the_month_in_order_with_their_total(
    recorded: DynamoDBLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["ledger", "--team", "search", "--month", "2026-12", "--table", LEDGER_TABLE]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "2026-12-03T10:15:42.123Z  r1  ranker  u-7  gpt-4o-mini  openai/gpt-4o-mini  settled  21 in  4 out  $0.00003",
        "2026-12-03T10:15:45.123Z  r2~1  ranker  -  nova-lite  openai/gpt-4o-mini  downgraded from gpt-4o  "
        "1000 in  2000 out  $1.234567",
        "search, 2026-12 (UTC): 2 calls, $1.234597 (the month's rollup: 2 calls, $1.234597)",
    ]


def test_exports_every_field_of_every_call_as_csv(
    recorded: DynamoDBLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported = tmp_path / "search-2026-12.csv"

    cli.main(["ledger", "--team", "search", "--month", "2026-12", "--csv", str(exported)])

    rows = list(csv.DictReader(exported.open()))
    assert [(row["request_id"], row["hop"], row["cost_usd"]) for row in rows] == [
        ("r1", "0", "0.00003"),
        ("r2", "1", "1.234567"),
    ]
    assert rows[1] | {"admitted_at": "-"} == {
        "admitted_at": "-",
        "request_id": "r2",
        "hop": "1",
        "team": "search",
        "app": "ranker",
        "env": "prod",
        "user": "",
        "principal": ENTRY.principal,
        "model": "nova-lite",
        "decision": "downgraded from gpt-4o",
        "outcome": "settled",
        "billed_on": "provider_usage",
        "deployment": "openai/gpt-4o-mini",
        "tried": "openai/gpt-4o-mini",
        "provider_request_id": "",
        "reserved_usd": "0.00009",
        "cost_usd": "1.234567",
        "input_tokens": "1000",
        "output_tokens": "2000",
        "cache_read_tokens": "300",
        "cache_write_tokens": "0",
        "latency_ms": "412",
        "first_token_ms": "",
        "flags": "",
        "metadata": "",
        "denial_code": "",
        "rule_scope": "",
        "rule_unit": "",
        "rule_limit": "",
        "rule_used": "",
        "rule_remaining": "",
        "rule_requested": "",
        "rule_window": "",
        "rule_resets_at": "",
    }
    assert capsys.readouterr().out.endswith(f"2 entries written to {exported}\n")


def test_a_denial_is_listed_with_its_decision_and_figures_and_counted_apart_from_the_calls(
    recorded: DynamoDBLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded.record(DENIAL)
    exported = tmp_path / "search-2026-12.csv"

    assert cli.main(["ledger", "--team", "search", "--month", "2026-12", "--csv", str(exported)]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        "2026-12-03T10:15:43.000Z  r4  ranker  u-7  gpt-4o  -  denied by rule search-monthly  "
        "insufficient_quota: needs $0.00345, $0.0018 left of $2000 cost_per_month (team=search, 2026-12)  $0"
    )
    assert lines[3] == (
        "search, 2026-12 (UTC): 2 calls, $1.234597 (the month's rollup: 2 calls, $1.234597); "
        "1 denied (the month's rollup: 1)"
    )
    denied = next(row for row in csv.DictReader(exported.open()) if row["request_id"] == "r4")
    assert {key: denied[key] for key in ("decision", "outcome", "cost_usd", "reserved_usd", "denial_code")} == {
        "decision": "denied by rule search-monthly",
        "outcome": "denied",
        "cost_usd": "0",
        "reserved_usd": "0",
        "denial_code": "insufficient_quota",
    }
    assert [denied[f"rule_{name}"] for name in ("unit", "limit", "used", "remaining", "requested", "resets_at")] == [
        "cost_per_month",
        "2000000000",
        "1999998200",
        "1800",
        "3450",
        "2027-01-01T00:00:00.000Z",
    ]


def test_one_request_is_found_by_its_id(recorded: DynamoDBLedger, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ledger", "--request", "r2"]) == 0
    assert capsys.readouterr().out.startswith("2026-12-03T10:15:45.123Z  r2~1  ranker")
    assert cli.main(["ledger", "--request", "nope"]) == 1


def test_a_month_must_be_a_month(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["ledger", "--team", "search", "--month", "December", "--table", "t"])
    assert "is not a month: YYYY-MM" in capsys.readouterr().err
