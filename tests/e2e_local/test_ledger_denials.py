"""What issue 9 asks of the ledger beyond settled calls with holds, through the whole local
stack: a call the rules refuse is on record (denied by its rule, counted in the team's denials,
never in its calls or cost), and a call no rule matches is on record with what it cost."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from paymaster import cli, names
from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.client import SigV4Auth
from paymaster.domain.ledger import Rollup, Totals
from paymaster.domain.money import MICRO_PER_USD
from paymaster_local.credentials import session_for
from paymaster_local.resources import LEDGER_TABLE
from paymaster_local.stack import LocalStack
from tests.e2e_local.conftest import stack_with_rules
from tests.local_aws import local_client

# search may make one request a day; support has no rule at all.
RULES = [{"name": "search-one-a-day", "when": {"team": "search"}, "limit": 1, "unit": "requests_per_day"}]
LEDGER_WAIT_S = 30
BODY = {"messages": [{"role": "user", "content": "on the record"}], "max_tokens": 20}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with stack_with_rules(RULES, tmp_path_factory.mktemp("ledger-denials")) as running:
        yield running


def client(stack: LocalStack, profile: str) -> httpx.Client:
    return httpx.Client(base_url=stack.url, auth=SigV4Auth(session=session_for(stack.credentials, profile)), timeout=30)


def caught_up(ledger: DynamoDBLedger, rollup: Rollup, calls: int, denials: int = 0) -> Totals:
    """The rollup once the runner has recorded as many calls and denials (it trails the calls)."""
    deadline = time.monotonic() + LEDGER_WAIT_S
    while ((found := ledger.rollup(rollup)).calls, found.denials) != (calls, denials) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_a_refused_call_is_in_the_ledger_denied_by_its_rule_and_in_the_denials_count(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    search = client(stack, "search-ranker")
    admitted = search.post("/v1/chat/completions", json={"model": "gpt-4o-mini", **BODY})
    refused = search.post("/v1/chat/completions", json={"model": "gpt-4o-mini", **BODY})
    assert (admitted.status_code, refused.status_code) == (200, 429)
    cost = int(Decimal(admitted.headers[names.HEADER_COST]) * MICRO_PER_USD)
    refused_id = refused.headers[names.HEADER_REQUEST_ID]
    month, day = datetime.now(UTC).strftime("%Y-%m"), datetime.now(UTC).strftime("%Y-%m-%d")

    ledger = DynamoDBLedger(local_client("dynamodb", stack.aws_url), LEDGER_TABLE)
    total = caught_up(ledger, Rollup("search", month), calls=1, denials=1)

    assert (total.calls, total.cost, total.denials) == (1, cost, 1)
    assert ledger.rollup(Rollup("search", day, "rule", "search-one-a-day")).denials == 1
    (denial,) = ledger.request(refused_id)
    assert (denial.decision, denial.cost, denial.reserved) == ("denied by rule search-one-a-day", 0, 0)
    assert denial.denial is not None
    assert (denial.denial.code, denial.denial.limit, denial.denial.used) == ("rate_limit_exceeded", 1, 1)

    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.aws_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    capsys.readouterr()
    assert cli.main(["ledger", "--team", "search", "--month", month, "--table", LEDGER_TABLE]) == 0
    report = capsys.readouterr().out.splitlines()
    (listed,) = [line for line in report if refused_id in line]
    assert "  denied by rule search-one-a-day  rate_limit_exceeded: needs 1, 0 left of 1 requests_per_day" in listed
    assert report[-1].endswith("; 1 denied (the month's rollup: 1)")


def test_a_call_no_rule_matches_is_in_the_ledger_with_its_cost(stack: LocalStack) -> None:
    answer = client(stack, "support-assistant").post("/v1/chat/completions", json={"model": "claude-haiku", **BODY})
    assert answer.status_code == 200, answer.text
    cost = int(Decimal(answer.headers[names.HEADER_COST]) * MICRO_PER_USD)
    month = datetime.now(UTC).strftime("%Y-%m")

    ledger = DynamoDBLedger(local_client("dynamodb", stack.aws_url), LEDGER_TABLE)
    total = caught_up(ledger, Rollup("support", month), calls=1)

    assert (total.calls, total.cost) == (1, cost)
    (entry,) = ledger.request(answer.headers[names.HEADER_REQUEST_ID])
    assert (entry.decision, entry.outcome, entry.cost, entry.billed_on) == (
        "admitted",
        "settled",
        cost,
        "provider_usage",
    )
    assert entry.reserved >= cost > 0
