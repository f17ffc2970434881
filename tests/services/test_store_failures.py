"""What admission does when the counter store cannot take a request: the in-memory store told
to fail (`fail_next`) as the DynamoDB store fails when DynamoDB cannot be reached or does not
answer. The same paths through the DynamoDB wire, with answers really lost, are in
`tests/adapters/test_unknown_outcomes.py`."""

from typing import Any

import pytest

from paymaster.adapters.memory import MemoryCounterStore, MemorySettlementQueue
from paymaster.adapters.tokenizer import count_tokens
from paymaster.domain.chat import ChatRequest, Usage
from paymaster.domain.errors import StoreOutcomeUnknownError, StoreUnavailableError
from paymaster.domain.identity import Caller
from paymaster.domain.metering import Reported
from paymaster.ports import CounterStore
from paymaster.services.admission import AdmissionService
from paymaster.services.settlements import SettlementRetry
from tests.policies import policy_with
from tests.reservations import BUDGET, NOW, RPM, holds

SEARCH = Caller(team="search", app="ranker", env="prod", principal="search-ranker", arn="arn")
REQUEST = ChatRequest.model_validate(
    {"model": "fixed-cost", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 10}
)
UNREACHABLE = StoreUnavailableError("the counter store is unreachable: EndpointConnectionError")
NO_ANSWER = StoreOutcomeUnknownError("the counter store did not answer: ReadTimeoutError")


def states(store: CounterStore, held: Any) -> list[tuple[int, int]]:
    found = store.counters([(hold.pk, hold.sk) for hold in held])
    return [(state.committed, state.spent) for state in found.values()]


def test_a_release_the_store_cannot_take_is_queued_and_lands_when_retried(store: MemoryCounterStore) -> None:
    """The store applies the admission without answering, then goes away before the release."""
    queue = MemorySettlementQueue()
    held = holds(BUDGET, RPM)
    store.fail_next("reserve", NO_ANSWER, applied=True)
    store.fail_next("settle", UNREACHABLE)
    service = AdmissionService(policy_with([BUDGET, RPM]), store, count_tokens, lambda: NOW, queue)
    with pytest.raises(StoreUnavailableError):
        service.admit(SEARCH, REQUEST, "r1")
    assert states(store, held) == [(10, 0), (1, 0)]  # held, for now

    (release,) = queue.take()
    assert release.fence is True
    assert SettlementRetry(store).apply(release) is True

    assert states(store, held) == [(0, 0), (0, 0)]
    assert SettlementRetry(store).apply(release) is False  # delivered twice: counted once


def test_a_settlement_the_store_cannot_take_is_queued_and_applied_later_exactly_once(
    store: MemoryCounterStore,
) -> None:
    queue = MemorySettlementQueue()
    service = AdmissionService(policy_with([BUDGET, RPM]), store, count_tokens, lambda: NOW, queue)
    admitted = service.admit(SEARCH, REQUEST, "r1")
    store.fail_next("settle", UNREACHABLE)

    service.settle(admitted, Reported(Usage(30, 7)))

    assert states(store, admitted.holds) == [(10, 0), (1, 0)]
    (settlement,) = queue.take()
    retry = SettlementRetry(store)
    assert [retry.apply(settlement), retry.apply(settlement)] == [True, False]
    assert states(store, admitted.holds) == [(7, 7), (1, 1)]
