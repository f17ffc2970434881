"""Every settled call reaches the ledger through the counters' stream, under concurrency, exactly
once — and the ledger, the counters and what the callers were told agree to the micro-dollar, as
`paymaster ledger` lists it and `GET /v1/usage` reports it, whole and by app, model and user."""

import re
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

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
APPS = {"search": "ranker", "support": "assistant"}  # the demo policy's apps of those principals
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


@dataclass(frozen=True)
class Burst:
    """What the burst's callers were told: team → request id → µUSD echoed, and the UTC month."""

    echoed: dict[str, dict[str, int]]
    month: str


@pytest.fixture(scope="module")
def clients(ledgered: LocalStack) -> dict[str, httpx.Client]:
    """A SigV4-signed client per team, as its app has."""
    return {
        team: httpx.Client(
            base_url=ledgered.url, auth=SigV4Auth(session=session_for(ledgered.credentials, profile)), timeout=60
        )
        for team, (profile, _) in CALLERS.items()
    }


@pytest.fixture(scope="module")
def burst(ledgered: LocalStack, clients: dict[str, httpx.Client]) -> Burst:
    """200 concurrent calls of two teams, a third of them naming a user; returned once the ledger
    function has recorded every one (it trails the calls)."""

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
    echoed: dict[str, dict[str, int]] = defaultdict(dict)
    for team, request_id, cost in answers:
        echoed[team][request_id] = cost
    ledger = DynamoDBLedger(local_client("dynamodb", ledgered.aws_url), LEDGER_TABLE)
    for team, calls in echoed.items():
        entries_of(ledger, team, month, len(calls))
    return Burst(dict(echoed), month)


def test_200_concurrent_calls_of_two_teams_are_200_entries_that_add_up_to_spent_and_echoed(
    ledgered: LocalStack,
    clients: dict[str, httpx.Client],
    burst: Burst,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    month = burst.month
    ledger = DynamoDBLedger(local_client("dynamodb", ledgered.aws_url), LEDGER_TABLE)
    for team, calls in burst.echoed.items():
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

    local_aws_for_the_cli(ledgered, monkeypatch)
    capsys.readouterr()
    assert cli.main(["ledger", "--team", "search", "--month", month, "--table", LEDGER_TABLE]) == 0
    report = capsys.readouterr().out.splitlines()
    spent_usd = format_usd(sum(burst.echoed["search"].values()))
    assert len(report) == REQUESTS // 2 + 1
    assert report[-1] == f"search, {month} (UTC): 100 calls, ${spent_usd} (the month's rollup: 100 calls, ${spent_usd})"


def test_the_cli_total_usage_spend_and_the_counters_spent_agree_for_each_team(
    ledgered: LocalStack,
    clients: dict[str, httpx.Client],
    burst: Burst,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The issue's check: `paymaster ledger --team T --month M` lists the calls with a total that
    is `GET /v1/usage`'s spend for M, which is the budget counter's spent — to the micro-dollar."""
    local_aws_for_the_cli(ledgered, monkeypatch)
    for team, calls in burst.echoed.items():
        capsys.readouterr()
        assert cli.main(["ledger", "--team", team, "--month", burst.month, "--table", LEDGER_TABLE]) == 0
        *lines, total_line = capsys.readouterr().out.splitlines()
        listed = sum(micro_usd(line.rsplit("$", 1)[1]) for line in lines)
        cli_total = re.fullmatch(rf"{team}, {burst.month} \(UTC\): (\d+) calls, \$([\d.]+) \(.*\)", total_line)
        assert cli_total is not None, total_line

        answer = clients[team].get("/v1/usage", params={"month": burst.month}).raise_for_status().json()
        (month,) = answer["spend"]["months"]
        (budget,) = (rule for rule in answer["rules"] if rule["rule"] == f"{team}-budget")

        spent = sum(calls.values())
        assert (answer["team"], month["month"], month["to_date"]) == (team, burst.month, True)
        assert (len(lines), int(cli_total[1]), month["calls"]) == (len(calls),) * 3
        assert listed == micro_usd(cli_total[2]) == month["cost_micro_usd"] == micro_usd(budget["used"]) == spent
        assert month["cost_usd"] == cli_total[2] == format_usd(spent)


@pytest.mark.parametrize("by", ["app", "model", "user"])
def test_each_breakdown_of_the_month_adds_up_to_the_teams_spend_and_names_only_its_own(
    clients: dict[str, httpx.Client], burst: Burst, by: str
) -> None:
    for team, calls in burst.echoed.items():
        answer = clients[team].get("/v1/usage", params={"month": burst.month, "by": by}).raise_for_status().json()
        (month,) = answer["spend"]["months"]
        rows = month["breakdown"]

        assert month["by"] == by
        assert sum(row["cost_micro_usd"] for row in rows) == month["cost_micro_usd"] == sum(calls.values())
        assert sum(row["calls"] for row in rows) == month["calls"] == len(calls)
        expected = {"app": {APPS[team]}, "model": {CALLERS[team][1]}}.get(by)
        names_seen = {row[by] for row in rows}
        if expected is not None:
            assert names_seen == expected
        else:  # a third of the calls named one of five users; the rest are the unnamed row
            assert None in names_seen
            assert names_seen - {None} <= {f"user-{index}" for index in range(5)}


def test_the_openai_sdk_reads_the_spend_and_gets_its_own_errors_for_a_bad_question(
    ledgered: LocalStack, burst: Burst
) -> None:
    auth = SigV4Auth(session=session_for(ledgered.credentials, CALLERS["support"][0]))
    client = OpenAI(base_url=ledgered.url + "/v1", api_key="unused", http_client=httpx.Client(auth=auth), max_retries=0)

    answer = client.get("/usage", cast_to=httpx.Response, options={"params": {"by": "model"}}).json()
    (month,) = answer["spend"]["months"]
    assert (answer["team"], month["month"], month["cost_micro_usd"]) == (
        "support",
        burst.month,
        sum(burst.echoed["support"].values()),
    )

    with pytest.raises(openai.BadRequestError) as refused:
        client.get("/usage", cast_to=httpx.Response, options={"params": {"month": "2026-13"}})
    assert (refused.value.status_code, refused.value.code, refused.value.param) == (400, "invalid_request", "month")
    assert refused.value.type == "invalid_request_error"


def local_aws_for_the_cli(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """`paymaster ledger` finds the local stack as a developer's shell does."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.aws_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
