"""The ledger's events through the whole local stack: the runner's stream consumer publishes each
call's CostRecorded and each swept hold's ReservationExpired on the bus, whose rule delivers them
to the queue `paymaster events tail` reads."""

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from paymaster import names
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.adapters.memory import MemorySettlementQueue
from paymaster.adapters.policy_file import load_policy
from paymaster.adapters.tokenizer import count_tokens
from paymaster.domain.chat import ChatRequest
from paymaster.domain.events import CostRecorded, ReservationExpired
from paymaster.domain.identity import Caller
from paymaster.domain.ledger import LedgerEntry
from paymaster.domain.limits import RESERVATION_LIFETIME
from paymaster.domain.money import MICRO_PER_USD
from paymaster.services.admission import AdmissionService
from paymaster_local.resources import COUNTERS_TABLE, LEDGER_TABLE
from paymaster_local.stack import LocalStack
from tests.local_aws import local_client

WAIT_S = 60
BURST = {"search": ("search-ranker", "gpt-4o-mini"), "support": ("support-assistant", "claude-haiku")}
CALLS_PER_TEAM = 15
SEARCH_RANKER = Caller(
    team="search",
    app="ranker",
    env="prod",
    principal="search-ranker",
    arn="arn:aws:iam::111111111111:role/apps/search-ranker",
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def events_on_the_queue(stack: LocalStack, until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """Every event the local rule delivered, deleted as read, until `until(read so far)` holds and
    one more long poll finds the queue empty (so that a second copy would have been read too)."""
    sqs = local_client("sqs", stack.aws_url)
    read: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=stack.events_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages = answer.get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=stack.events_queue_url, ReceiptHandle=message["ReceiptHandle"])
            read.append(json.loads(message["Body"]))
        if not messages and until(read):
            break
    return read


def ledger_entries(stack: LocalStack, request_id: str) -> Iterator[LedgerEntry]:
    """The request's entries once the runner has recorded them (it trails the calls)."""
    ledger = DynamoDBLedger(local_client("dynamodb", stack.aws_url), LEDGER_TABLE)
    deadline = time.monotonic() + WAIT_S
    while not (entries := ledger.request(request_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    yield from entries


def test_a_hold_a_crash_left_is_charged_when_swept_recorded_as_expired_and_published(stack: LocalStack) -> None:
    """Admitted through the gateway's own store and never settled (the process died between
    reserve and settle); the sweeper, its clock past the hold's expiry, charges it at its
    reservation, and the ledger function records and publishes that settlement."""
    now = datetime.now(UTC)
    # Its hold expires 2 s from now by the real clock and is swept as soon as it has: the runner's
    # own sweeper (every real minute, and at the stack's start) would otherwise find it first.
    clock = Clock(now - RESERVATION_LIFETIME + timedelta(seconds=2))
    store = DynamoDBCounterStore(local_client("dynamodb", stack.aws_url), COUNTERS_TABLE)
    admission = AdmissionService(load_policy(stack.policy_file), store, count_tokens, clock, MemorySettlementQueue())
    request_id = f"crashed-{time.time_ns()}"
    request = ChatRequest.model_validate(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "never answered"}], "max_tokens": 40}
    )
    crashed = admission.admit(SEARCH_RANKER, request, request_id)  # and never settled
    (budget,) = (hold for hold in crashed.holds if hold.rule.name == "search-monthly")
    before = store.counters([(budget.pk, budget.sk)])[(budget.pk, budget.sk)]

    # The index keeps whole epoch seconds (rounded up) and finds holds strictly before `now`'s.
    time.sleep(max(0.0, (now + timedelta(seconds=4.1) - datetime.now(UTC)).total_seconds()))
    clock.now = datetime.now(UTC)
    assert admission.sweep() >= 1

    after = store.counters([(budget.pk, budget.sk)])[(budget.pk, budget.sk)]
    assert (after.committed, after.spent) == (before.committed, before.spent + budget.amount)  # charged in full
    (entry,) = ledger_entries(stack, request_id)
    assert (entry.outcome, entry.flags, entry.billed_on) == ("expired", ("expired_unsettled",), "reservation")
    assert entry.cost == entry.reserved == budget.amount > 0
    events = events_on_the_queue(
        stack, lambda read: any(event["detail"].get("request_id") == request_id for event in read)
    )
    (expired,) = (event for event in events if event["detail"].get("request_id") == request_id)
    assert (expired["source"], expired["detail-type"]) == (names.EVENT_SOURCE, names.RESERVATION_EXPIRED)
    event = ReservationExpired.model_validate(expired["detail"])
    assert (event.team, event.app, event.model, event.flags) == (
        "search",
        "ranker",
        "gpt-4o-mini",
        ("expired_unsettled",),
    )
    assert event.cost_usd_micros == event.reserved_usd_micros == entry.cost
    assert event.held_until == entry.held_until
    assert event.time >= event.held_until


def test_a_burst_of_calls_from_two_teams_is_one_cost_recorded_per_call_as_the_ledger_has_it(
    stack: LocalStack, signed_http: Callable[[str], httpx.Client]
) -> None:
    clients = {team: signed_http(profile) for team, (profile, _) in BURST.items()}

    def call(index: int) -> tuple[str, str, int]:
        team = ("search", "support")[index % 2]
        body = {
            "model": BURST[team][1],
            "messages": [{"role": "user", "content": " ".join(["burst"] * (1 + index % 5))}],
            "max_tokens": 20,
        }
        response = clients[team].post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        cost = int(Decimal(response.headers[names.HEADER_COST]) * MICRO_PER_USD)
        return team, response.headers[names.HEADER_REQUEST_ID], cost

    with ThreadPoolExecutor(8) as pool:
        answers = {request_id: (team, cost) for team, request_id, cost in pool.map(call, range(2 * CALLS_PER_TEAM))}

    events = events_on_the_queue(
        stack, lambda read: set(answers) <= {event["detail"].get("request_id") for event in read}
    )
    ours = [event for event in events if event["detail"].get("request_id") in answers]
    assert Counter(event["detail"].get("request_id") for event in ours) == dict.fromkeys(
        answers, 1
    )  # exactly one per call
    assert {event["detail-type"] for event in ours} == {names.COST_RECORDED}
    for published in ours:
        event = CostRecorded.model_validate(published["detail"])
        (entry,) = ledger_entries(stack, event.request_id)
        assert (event.team, event.cost_usd_micros) == answers[event.request_id]
        assert (event.request_id, event.cost_usd_micros, event.reserved_usd_micros) == (
            entry.request_id, entry.cost, entry.reserved
        )  # fmt: skip
        assert (event.app, event.model, event.deployment) == (entry.app, entry.model, entry.deployment)
    assert Counter(answers[event["detail"].get("request_id")][0] for event in ours) == {
        "search": CALLS_PER_TEAM,
        "support": CALLS_PER_TEAM,
    }
