"""Ledger entries for tests, and a fresh ledger table to record them in."""

from datetime import UTC, datetime
from typing import Any

from paymaster import schema
from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.domain.chat import Usage
from paymaster.domain.ledger import DENIED, Denial, LedgerEntry
from paymaster_local.resources import LEDGER_TABLE
from tests.local_aws import local_client

ADMITTED = datetime(2026, 12, 3, 10, 15, 42, 123_000, tzinfo=UTC)
ENTRY = LedgerEntry(
    request_id="r1",
    hop=0,
    admitted_at=ADMITTED,
    team="search",
    app="ranker",
    env="prod",
    principal="arn:aws:sts::111111111111:assumed-role/ranker/i-1",
    model="gpt-4o-mini",
    outcome="settled",
    reserved=90,
    cost=30,
    user="u-7",
    billed_on="provider_usage",
    usage=Usage(21, 4),
    deployment="openai/gpt-4o-mini",
    tried=("openai/gpt-4o-mini",),
    latency_ms=412,
)

# search-monthly refusing ranker's gpt-4o call a second after ENTRY.
DENIAL = LedgerEntry(
    request_id="r4",
    hop=0,
    admitted_at=datetime(2026, 12, 3, 10, 15, 43, tzinfo=UTC),
    team="search",
    app="ranker",
    env="prod",
    principal="arn:aws:sts::111111111111:assumed-role/ranker/i-1",
    model="gpt-4o",
    outcome=DENIED,
    reserved=0,
    cost=0,
    user="u-7",
    metadata=(("feature", "query-rewrite"),),
    denial=Denial(
        rule="search-monthly",
        code="insufficient_quota",
        scope="team=search",
        unit="cost_per_month",
        limit=2_000_000_000,
        used=1_999_998_200,
        remaining=1800,
        requested=3450,
        window="2026-12",
        resets_at=datetime(2027, 1, 1, tzinfo=UTC),
    ),
)


def fresh_ledger(aws_url: str, client: Any) -> DynamoDBLedger:
    """The ledger on a new table in the stand-in (which the caller has just reset), through `client`."""
    local_client("dynamodb", aws_url).create_table(**schema.LEDGER.create_table_request(LEDGER_TABLE))
    return DynamoDBLedger(client, LEDGER_TABLE)
