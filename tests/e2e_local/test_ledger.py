"""Every settled call reaches the ledger through the counters' stream, under concurrency, exactly
once — and the ledger, the counters and what the callers were told agree to the micro-dollar."""

import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from paymaster import cli, names
from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.client import SigV4Auth
from paymaster.domain.ledger import LedgerEntry, Rollup
from paymaster.domain.money import MICRO_PER_USD, format_usd
from paymaster_local.credentials import session_for
from paymaster_local.resources import LEDGER_TABLE
from paymaster_local.stack import LocalStack
from tests.e2e_local.conftest import stack_with_rules
from tests.local_aws import local_client

# One budget per team, in UTC like the ledger, so that a month is the same month in both.
RULES = [
    {"name": f"{team}-budget", "when": {"team": team}, "limit": 100, "unit": "cost_per_month", "per": ["team"]}
    for team in ("search", "support")
]
CALLERS = {"search": ("search-ranker", "gpt-4o-mini"), "support": ("support-assistant", "claude-haiku")}
REQUESTS = 200
LEDGER_WAIT_S = 60


@pytest.fixture(scope="module")
def ledgered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with stack_with_rules(RULES, tmp_path_factory.mktemp("ledger")) as running:
        yield running


def micro_usd(text: str) -> int:
    return int(Decimal(text) * MICRO_PER_USD)


def entries_of(ledger: DynamoDBLedger, team: str, month: str, expected: int) -> list[LedgerEntry]:
    """The team's entries once the runner has added `expected` of them to the month's total (it
    trails the calls); the total is one small item to read, the entries a page of a hundred."""
    deadline = time.monotonic() + LEDGER_WAIT_S
    while ledger.rollup(Rollup(team, month)).calls < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return list(ledger.calls(team, month))


def test_200_concurrent_calls_of_two_teams_are_200_entries_that_add_up_to_spent_and_echoed(
    ledgered: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clients = {
        team: httpx.Client(
            base_url=ledgered.url, auth=SigV4Auth(session=session_for(ledgered.credentials, profile)), timeout=60
        )
        for team, (profile, _) in CALLERS.items()
    }

    def call(index: int) -> tuple[str, str, int]:
        team = ("search", "support")[index % 2]
        body: dict[str, Any] = {
            "model": CALLERS[team][1],
            "messages": [{"role": "user", "content": " ".join(["spend"] * (1 + index % 7))}],
            "max_tokens": 20,
        }
        if index % 3 == 0:
            body["user"] = f"user-{index % 5}"
        response = clients[team].post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        return team, response.headers[names.HEADER_REQUEST_ID], micro_usd(response.headers[names.HEADER_COST])

    month = datetime.now(UTC).strftime("%Y-%m")
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(call, range(REQUESTS)))

    dynamodb = local_client("dynamodb", ledgered.aws_url)
    ledger = DynamoDBLedger(dynamodb, LEDGER_TABLE)
    echoed: dict[str, dict[str, int]] = defaultdict(dict)
    for team, request_id, cost in answers:
        echoed[team][request_id] = cost
    for team, calls in echoed.items():
        entries = entries_of(ledger, team, month, len(calls))
        usage = clients[team].get("/v1/usage").json()
        (budget,) = (rule for rule in usage["rules"] if rule["rule"] == f"{team}-budget")

        # One entry per call (none fell back: one hop each), each what its caller was told.
        assert sorted(entry.request_id for entry in entries) == sorted(calls)
        assert {entry.request_id: entry.cost for entry in entries} == calls
        assert {entry.hop for entry in entries} == {0}
        spent = sum(calls.values())
        assert (micro_usd(budget["used"]), micro_usd(budget["reserved"])) == (spent, 0)
        total = ledger.rollup(Rollup(team, month))
        assert (total.calls, total.cost) == (len(calls), spent)
        assert total.output_tokens == sum(entry.usage.output_tokens for entry in entries if entry.usage)

    monkeypatch.setenv("AWS_ENDPOINT_URL", ledgered.aws_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    capsys.readouterr()
    assert cli.main(["ledger", "--team", "search", "--month", month, "--table", LEDGER_TABLE]) == 0
    report = capsys.readouterr().out.splitlines()
    spent = format_usd(sum(echoed["search"].values()))
    assert len(report) == REQUESTS // 2 + 1
    assert report[-1] == f"search, {month} (UTC): 100 calls, ${spent} (the month's rollup: 100 calls, ${spent})"
