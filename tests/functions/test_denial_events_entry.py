"""At the entry point: a 429 is answered after its RequestDenied, the same whatever the bus does,
and no later than the wait allows; a served request publishes nothing."""

import json
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from paymaster import names
from paymaster.adapters.memory import MemoryCounterStore
from paymaster.domain.events import RequestDenied
from paymaster.ports import EventPublisher
from paymaster.services.denials import DenialEvents
from tests.functions.gateway import RecordingProvider, as_lwa_request, lambda_entry
from tests.policies import policy_with
from tests.publishers import HangingBus, RaisingBus, RecordingBus

ONE_PER_MINUTE = {"name": "rpm", "when": {"team": "search"}, "limit": 1, "unit": "requests_per_minute"}
WAIT_S = 0.1


def gateway(denials: DenialEvents) -> TestClient:
    return lambda_entry(policy_with([ONE_PER_MINUTE]), MemoryCounterStore(), RecordingProvider(), denials=denials)


def call(client: TestClient, event: dict[str, Any], request_id: str, *, stream: bool) -> Any:
    event = json.loads(json.dumps(event))
    event["requestContext"]["requestId"] = request_id
    event["body"] = json.dumps(json.loads(event["body"]) | {"stream": stream})
    return client.request(**as_lwa_request(event))


def answered(response: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, error and headers, less what moves with the clock (the seconds to the reset)."""
    clock = {"date", "content-length", "retry-after", "x-ratelimit-reset-requests"}
    headers = {name: value for name, value in response.headers.items() if name not in clock}
    error = response.json()["error"]
    error["paymaster"] = {key: value for key, value in error["paymaster"].items() if key not in {"window", "resets_at"}}
    return response.status_code, error | {"message": error["message"].split(" resets at ")[0]}, headers


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_429_publishes_one_request_denied_and_a_served_request_none(event: dict[str, Any], stream: bool) -> None:
    bus = RecordingBus()
    client = gateway(DenialEvents(bus))

    served = call(client, event, "first", stream=stream)
    assert served.status_code == 200
    assert bus.events == []

    refused = call(client, event, "second", stream=stream)

    assert refused.status_code == 429
    (denied,) = bus.events
    assert isinstance(denied, RequestDenied)
    assert denied.request_id == refused.headers[names.HEADER_REQUEST_ID] == "second"
    details = refused.json()["error"]["paymaster"]
    assert (denied.rule.name, denied.rule.scope, denied.rule.unit) == (
        details["rule"],
        details["scope"],
        details["unit"],
    )
    assert (str(denied.rule.limit), str(denied.rule.used), str(denied.rule.remaining)) == (
        details["limit"],
        details["used"],
        details["remaining"],
    )
    assert denied.code == refused.json()["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("failing", [HangingBus, RaisingBus], ids=["hangs", "raises"])
def test_a_bus_that_hangs_or_fails_changes_nothing_in_the_429_and_delays_it_by_the_wait_at_most(
    event: dict[str, Any], failing: type[EventPublisher]
) -> None:
    reference = gateway(DenialEvents(RecordingBus()))
    call(reference, event, "first", stream=False)
    expected = answered(call(reference, event, "second", stream=False))
    bus = failing()
    client = gateway(DenialEvents(bus, wait_s=WAIT_S))
    call(client, event, "first", stream=False)
    try:
        started = time.monotonic()
        response = call(client, event, "second", stream=False)
        waited = time.monotonic() - started
    finally:
        if isinstance(bus, HangingBus):
            bus.release.set()

    assert answered(response) == expected
    assert expected[0] == 429
    assert waited < WAIT_S + 0.5
