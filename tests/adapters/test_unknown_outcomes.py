"""A store that applies a write and then does not answer: nothing is held twice, nothing is left held.

The stand-in here is the local DynamoDB (moto, serialised, with ClientRequestToken) behind a
transport that forwards each request, lets the stand-in apply it, and then — for as many calls as
the test says — throws the answer away as a read timeout, as a client sees a store that committed
and then went quiet. What admission does with a release or settlement the store cannot take at
all (it queues it) is tested on the in-memory store, in `tests/services/test_store_failures.py`.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from botocore.credentials import Credentials

from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.memory import MemorySettlementQueue
from paymaster.adapters.tokenizer import count_tokens
from paymaster.domain.chat import ChatRequest, Usage
from paymaster.domain.errors import StoreOutcomeUnknownError, StoreUnavailableError
from paymaster.domain.identity import Caller
from paymaster.domain.metering import Reported
from paymaster.ports import CounterState
from paymaster.services.admission import AdmissionService
from paymaster_local.resources import COUNTERS_TABLE
from tests.policies import policy_with
from tests.reservations import BUDGET, RPM, holds, reservation

SEARCH = Caller(team="search", app="ranker", env="prod", principal="search-ranker", arn="arn")
NOW = datetime(2026, 11, 29, 18, 25, tzinfo=UTC)
REQUEST = ChatRequest.model_validate(
    {"model": "fixed-cost", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 10}
)
TRANSACT = "DynamoDB_20120810.TransactWriteItems"


class CommitsThenTimesOut(httpx.BaseTransport):
    """Forwards every request; the first `lost` TransactWriteItems answers never reach the client.
    `vanish`: that many TransactWriteItems never reach the store, and time out as lost answers do."""

    def __init__(self, url: str, *, lost: int = 0, vanish: int = 0, strip_token: bool = False) -> None:
        self._inner = httpx.HTTPTransport()
        self.lost = lost
        self.vanish = vanish
        self.sent: list[dict[str, Any]] = []
        self._strip_token = strip_token

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("x-amz-target") == TRANSACT:
            body = json.loads(request.content)
            if self._strip_token:  # a stand-in that ignores the token, or a window that has passed
                body.pop("ClientRequestToken", None)
                request = httpx.Request(request.method, request.url, headers=request.headers, json=body)
                request.headers["content-length"] = str(len(request.content))
            self.sent.append(body)
            if self.vanish > 0:
                self.vanish -= 1
                raise httpx.ReadTimeout("the request was lost on its way to the store", request=request)
        response = self._inner.handle_request(request)
        response.read()
        if request.headers.get("x-amz-target") == TRANSACT and self.lost > 0:
            self.lost -= 1
            raise httpx.ReadTimeout("the answer was lost after the store applied the request", request=request)
        return response


@pytest.fixture
def flaky(dynamodb: DynamoDBWire, aws_url: str) -> Callable[..., tuple[DynamoDBCounterStore, CommitsThenTimesOut]]:
    """A store whose answers the test loses; the wire tries each request three times."""

    def make(
        *, lost: int = 0, vanish: int = 0, strip_token: bool = False
    ) -> tuple[DynamoDBCounterStore, CommitsThenTimesOut]:
        transport = CommitsThenTimesOut(aws_url, lost=lost, vanish=vanish, strip_token=strip_token)
        wire = DynamoDBWire(
            transport,
            endpoint_url=aws_url,
            region="us-east-1",
            credentials=Credentials("local", "local"),
            max_attempts=3,
            sleep=lambda _: None,
        )
        return DynamoDBCounterStore(wire, COUNTERS_TABLE, sleep=lambda _: None), transport

    return make


def states(store: DynamoDBCounterStore, held: Any) -> list[tuple[int, int]]:
    found: dict[tuple[str, str], CounterState] = store.counters([(hold.pk, hold.sk) for hold in held])
    return [(state.committed, state.spent) for state in found.values()]


def test_a_reservation_whose_answer_was_lost_is_held_once_when_sent_again(
    flaky: Callable[..., tuple[DynamoDBCounterStore, CommitsThenTimesOut]],
) -> None:
    store, transport = flaky(lost=1)
    held = holds(BUDGET, RPM)

    assert store.reserve(reservation("r1", held)) == []

    assert len(transport.sent) == 2
    assert transport.sent[0] == transport.sent[1]  # the same request, token included
    assert states(store, held) == [(10, 0), (1, 0)]


def test_a_repeat_that_finds_its_own_reservation_is_admitted_even_without_the_token(
    flaky: Callable[..., tuple[DynamoDBCounterStore, CommitsThenTimesOut]],
) -> None:
    store, _ = flaky(lost=1, strip_token=True)
    held = holds(BUDGET, RPM)

    assert store.reserve(reservation("r1", held)) == []

    assert states(store, held) == [(10, 0), (1, 0)]


def test_a_reservation_never_answered_is_an_unknown_outcome(
    flaky: Callable[..., tuple[DynamoDBCounterStore, CommitsThenTimesOut]],
) -> None:
    store, transport = flaky(lost=3)

    with pytest.raises(StoreOutcomeUnknownError):
        store.reserve(reservation("r1", holds(BUDGET)))

    assert len(transport.sent) == 3


def admission(store: DynamoDBCounterStore, on_store_error: str = "closed") -> tuple[AdmissionService, Any]:
    policy = policy_with([BUDGET | {"on_store_error": on_store_error}, RPM])
    queue = MemorySettlementQueue()
    return AdmissionService(policy, store, count_tokens, lambda: NOW, queue), queue


@pytest.mark.parametrize(("on_store_error", "admitted"), [("closed", False), ("open", True)])
def test_an_admission_the_store_committed_but_never_confirmed_leaves_nothing_held(
    flaky: Callable[..., tuple[DynamoDBCounterStore, CommitsThenTimesOut]], on_store_error: str, admitted: bool
) -> None:
    store, _ = flaky(lost=3)
    service, queue = admission(store, on_store_error)
    held = holds(BUDGET, RPM)

    if admitted:
        assert service.admit(SEARCH, REQUEST, "r1").held is False
    else:
        with pytest.raises(StoreUnavailableError):
            service.admit(SEARCH, REQUEST, "r1")

    assert states(store, held) == [(0, 0), (0, 0)]
    assert queue.take() == []


def test_an_admission_that_never_reached_the_store_is_fenced_so_it_cannot_commit_later(
    flaky: Callable[..., tuple[DynamoDBCounterStore, CommitsThenTimesOut]],
) -> None:
    store, _ = flaky(vanish=3)  # every attempt lost on the way: the gateway cannot tell
    service, _ = admission(store)
    held = holds(BUDGET, RPM)
    with pytest.raises(StoreUnavailableError):
        service.admit(SEARCH, REQUEST, "r1")

    # One of those attempts, arriving late, is refused: the id is released.
    with pytest.raises(StoreUnavailableError, match="already reserved"):
        store.reserve(reservation("r1", held))
    assert states(store, held) == [(0, 0), (0, 0)]


def test_a_settlement_whose_answer_was_lost_counts_once(
    flaky: Callable[..., tuple[DynamoDBCounterStore, CommitsThenTimesOut]],
) -> None:
    store, transport = flaky()
    service, queue = admission(store)
    admitted = service.admit(SEARCH, REQUEST, "r1")
    transport.lost = 1

    bill = service.settle(admitted, Reported(Usage(30, 7)))

    assert bill.cost == 7
    assert states(store, admitted.holds) == [(7, 7), (1, 1)]
    assert queue.take() == []
