"""The ledger table as the ledger function writes it and finance reads it, on the serialised stand-in."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from paymaster import schema
from paymaster.adapters.dynamodb_ledger import LEDGER_RETENTION, DynamoDBLedger
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.domain.chat import Usage
from paymaster.domain.errors import StoreUnavailableError
from paymaster.domain.ledger import Rollup, Totals
from paymaster_local.resources import LEDGER_TABLE
from tests.dynamodb_answers import conflicting
from tests.ledger_entries import ADMITTED, DENIAL, ENTRY, fresh_ledger
from tests.local_aws import local_client


@pytest.fixture
def ledger(dynamodb: DynamoDBWire, aws_url: str) -> DynamoDBLedger:
    """Written through the gateway's own DynamoDB client, as the ledger function writes it."""
    return fresh_ledger(aws_url, dynamodb)


def test_an_entry_is_recorded_once_with_its_rollups(ledger: DynamoDBLedger) -> None:
    assert ledger.record(ENTRY) is True
    assert ledger.record(ENTRY) is False

    assert list(ledger.calls("search", "2026-12")) == [ENTRY]
    assert ledger.rollup(Rollup("search", "2026-12")) == Totals(1, 30, 21, 4)
    assert ledger.rollup(Rollup("search", "2026-12-03", "model", "gpt-4o-mini")) == Totals(1, 30, 21, 4)
    assert ledger.rollup(Rollup("search", "2026-12", "user", "u-7")) == Totals(1, 30, 21, 4)


def test_a_denial_is_recorded_once_among_the_calls_and_counts_denials_never_calls_or_cost(
    ledger: DynamoDBLedger,
) -> None:
    ledger.record(ENTRY)

    assert ledger.record(DENIAL) is True
    assert ledger.record(DENIAL) is False

    assert list(ledger.calls("search", "2026-12")) == [ENTRY, DENIAL]
    assert ledger.request("r4") == [DENIAL]
    call = Totals(1, 30, 21, 4)
    assert ledger.rollup(Rollup("search", "2026-12")) == replace(call, denials=1)
    assert ledger.rollup(Rollup("search", "2026-12", "app", "ranker")) == replace(call, denials=1)
    assert ledger.rollup(Rollup("search", "2026-12-03")) == replace(call, denials=1)
    assert ledger.rollup(Rollup("search", "2026-12", "rule", "search-monthly")) == Totals(denials=1)
    assert ledger.rollup(Rollup("search", "2026-12-03", "rule", "search-monthly")) == Totals(denials=1)
    # The spend rollups of the model refused and of the user are a call's only.
    assert ledger.rollup(Rollup("search", "2026-12", "model", "gpt-4o")) == Totals()
    assert ledger.rollup(Rollup("search", "2026-12", "user", "u-7")) == call


def test_a_request_that_fell_back_has_an_entry_per_hop_found_by_its_id(ledger: DynamoDBLedger) -> None:
    released = replace(ENTRY, outcome="released", cost=0, usage=None, billed_on="released")
    fallback = replace(ENTRY, hop=2, admitted_at=ADMITTED + timedelta(milliseconds=480), model="nova-lite", cost=9)
    ledger.record(fallback)  # the stream keeps no order across items
    ledger.record(released)
    ledger.record(replace(ENTRY, request_id="r2"))

    assert ledger.request("r1") == [released, fallback]
    assert ledger.rollup(Rollup("search", "2026-12")) == Totals(calls=3, cost=39, input_tokens=42, output_tokens=8)


def test_a_teams_month_lists_its_calls_in_order_of_admission_and_nothing_else(ledger: DynamoDBLedger) -> None:
    later = replace(ENTRY, request_id="r2", admitted_at=ADMITTED + timedelta(seconds=1))
    for entry in (
        later,
        ENTRY,
        replace(ENTRY, request_id="r3", team="support"),
        replace(ENTRY, request_id="r4", admitted_at=datetime(2026, 11, 30, 23, 59, tzinfo=UTC)),
    ):
        ledger.record(entry)

    assert [entry.request_id for entry in ledger.calls("search", "2026-12")] == ["r1", "r2"]
    assert [entry.request_id for entry in ledger.calls("search", "2026-11")] == ["r4"]
    assert ledger.rollup(Rollup("support", "2026-12", "app", "ranker")).calls == 1


def test_a_call_without_a_user_adds_to_no_user_rollup_and_nothing_is_kept_forever(
    ledger: DynamoDBLedger, aws_url: str
) -> None:
    ledger.record(replace(ENTRY, user=None))
    client = local_client("dynamodb", aws_url)

    items = client.scan(TableName=LEDGER_TABLE)["Items"]

    assert sorted(item[schema.PARTITION_KEY]["S"] for item in items) == [
        "CALLS#search#2026-12",
        "SPEND#search#2026-12",
        "SPEND#search#2026-12#app",
        "SPEND#search#2026-12#model",
        "SPEND#search#2026-12-03",
        "SPEND#search#2026-12-03#model",
    ]
    kept_until = int((datetime(2027, 1, 1, tzinfo=UTC) + LEDGER_RETENTION).timestamp())
    assert {int(item[schema.TTL_ATTRIBUTE]["N"]) for item in items} == {kept_until}


def test_rollups_of_nothing_are_zero(ledger: DynamoDBLedger) -> None:
    assert ledger.rollup(Rollup("search", "2026-12", "model", "gpt-4o")) == Totals()


def test_transaction_conflicts_on_hot_rollups_are_retried_until_the_entry_lands() -> None:
    client, attempts = conflicting(times=3)
    ledger = DynamoDBLedger(client, "ledger", sleep=lambda _: None)

    assert ledger.record(ENTRY) is True
    assert len(attempts) == 4


def test_persistent_conflicts_leave_the_record_to_be_delivered_again() -> None:
    client, _ = conflicting(times=100)
    ledger = DynamoDBLedger(client, "ledger", sleep=lambda _: None)

    with pytest.raises(StoreUnavailableError, match="the ledger cancelled the transaction"):
        ledger.record(ENTRY)


def test_a_months_apps_models_and_users_are_each_one_partition_read_whole(ledger: DynamoDBLedger) -> None:
    for entry in (
        ENTRY,  # ranker, gpt-4o-mini, u-7: 30 µUSD, 21 in 4 out
        replace(ENTRY, request_id="r2", app="indexer", model="nova-lite", user=None, cost=12, usage=None),
        replace(ENTRY, request_id="r3", user="u-8", cost=9, usage=Usage(5, 2, cache_read_tokens=3)),
        replace(ENTRY, request_id="r4", team="support", app="assistant", user="u-7", cost=1_000),
        replace(ENTRY, request_id="r5", admitted_at=datetime(2026, 11, 30, 23, 59, tzinfo=UTC), cost=5),
    ):
        ledger.record(entry)

    assert ledger.breakdown("search", "2026-12", "app") == {
        "ranker": Totals(2, 39, 26, 6, 3),
        "indexer": Totals(1, 12),
    }
    assert ledger.breakdown("search", "2026-12", "model") == {
        "gpt-4o-mini": Totals(2, 39, 26, 6, 3),
        "nova-lite": Totals(1, 12),
    }
    assert ledger.breakdown("search", "2026-12", "user") == {"u-7": Totals(1, 30, 21, 4), "u-8": Totals(1, 9, 5, 2, 3)}
    assert ledger.breakdown("search", "2026-11", "app") == {"ranker": Totals(1, 5, 21, 4)}
    assert ledger.breakdown("search", "2027-01", "app") == {}


def test_a_breakdown_follows_every_page_of_its_partition(dynamodb: DynamoDBWire, aws_url: str) -> None:
    class OneRowPages:
        """The gateway's client, asking DynamoDB for one item per page: a partition past 1 MB."""

        def __init__(self, wire: DynamoDBWire) -> None:
            self.wire = wire
            self.pages = 0

        def query(self, **body: Any) -> dict[str, Any]:
            self.pages += 1
            return self.wire.query(**body, Limit=1)

    paged = OneRowPages(dynamodb)
    writer = fresh_ledger(aws_url, dynamodb)
    for index in range(3):
        writer.record(replace(ENTRY, request_id=f"r{index}", user=f"u-{index}", cost=index + 1))

    rows = DynamoDBLedger(paged, LEDGER_TABLE).breakdown("search", "2026-12", "user")

    assert {user: totals.cost for user, totals in rows.items()} == {"u-0": 1, "u-1": 2, "u-2": 3}
    assert paged.pages >= 3


def test_a_ledger_table_that_is_not_there_is_unavailable_not_an_error_of_the_caller(dynamodb: DynamoDBWire) -> None:
    ledger = DynamoDBLedger(dynamodb, "no-such-table")

    with pytest.raises(StoreUnavailableError, match="the ledger"):
        ledger.breakdown("search", "2026-12", "app")
    with pytest.raises(StoreUnavailableError, match="the ledger"):
        ledger.rollup(Rollup("search", "2026-12"))
