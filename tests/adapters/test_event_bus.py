"""The EventBridge publisher: what boto3 would send, delivered through a rule to a queue (moto),
in batches PutEvents takes, and a partial failure retried without losing or doubling an event."""

import io
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paymaster import names
from paymaster.adapters.aws_environment import StaticCredentials
from paymaster.adapters.event_bus import (
    MAX_REQUEST_BYTES,
    EventBridgePublisher,
    EventBridgeWire,
    NoEventBus,
    entry_size,
)
from paymaster.cli import tail_events
from paymaster.domain.events import CostRecorded, PaymasterEvent, RequestDenied, ReservationExpired
from paymaster.ports import EventPublisher
from tests.publishers import ScriptedBus

PUBLISHED = Path(__file__).resolve().parents[2] / "events" / "published"
PUBLISHED_SAMPLES: list[tuple[str, type[PaymasterEvent]]] = [
    ("cost-recorded.json", CostRecorded),
    ("request-denied.json", RequestDenied),
    ("reservation-expired.json", ReservationExpired),
]
NOW = datetime(2026, 11, 29, 14, 25, 0, 318_000, tzinfo=UTC)
BUS = "paymaster-events"


def expired(request_id: str, *, padding: int = 0) -> ReservationExpired:
    """A small event; `padding` characters more in its model name make it as big as a test needs."""
    return ReservationExpired(
        request_id=request_id,
        time=NOW,
        team="search",
        app="ranker",
        model="gpt-4o-mini" + "x" * padding,
        reserved_usd_micros=810,
        cost_usd_micros=810,
        held_until=NOW,
        flags=("expired_unsettled",),
    )


def wire(endpoint: str, transport: httpx.BaseTransport, *, max_attempts: int = 3) -> EventBridgeWire:
    return EventBridgeWire(
        transport,
        endpoint_url=endpoint,
        region="us-east-1",
        credentials=StaticCredentials("local", "local"),
        max_attempts=max_attempts,
        sleep=lambda _: None,
    )


def publisher(
    transport: httpx.BaseTransport, *, max_attempts: int = 3, entry_attempts: int = 4
) -> EventBridgePublisher:
    endpoint = "https://events.us-east-1.amazonaws.com"
    return EventBridgePublisher(
        wire(endpoint, transport, max_attempts=max_attempts), BUS, entry_attempts=entry_attempts, sleep=lambda _: None
    )


class Sent(Exception):
    """Stops boto3 once it has built its request."""


def request_id(entry: dict[str, Any]) -> str:
    return str(json.loads(entry["Detail"])["request_id"])


# --- against the stand-in: a rule delivers what PutEvents took to an SQS queue ---


@pytest.fixture
def queue(aws_url: str) -> Iterator[tuple[Any, str]]:
    """A bus of its own with the local stack's rule (`source: paymaster`) → a queue of its own."""
    session = boto3.Session(aws_access_key_id="l", aws_secret_access_key="l", region_name="us-east-1")
    events, sqs = session.client("events", endpoint_url=aws_url), session.client("sqs", endpoint_url=aws_url)
    name = f"events-{uuid.uuid4().hex[:8]}"
    events.create_event_bus(Name=name)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventBusName=name, EventPattern=json.dumps({"source": [names.EVENT_SOURCE]}))
    events.put_targets(Rule=name, EventBusName=name, Targets=[{"Id": "queue", "Arn": arn}])
    yield sqs, url
    events.remove_targets(Rule=name, EventBusName=name, Ids=["queue"])
    events.delete_rule(Name=name, EventBusName=name)
    events.delete_event_bus(Name=name)
    sqs.delete_queue(QueueUrl=url)


def received(sqs: Any, url: str, expected: int) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    for _ in range(20):
        if len(bodies) >= expected:
            break
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in answer.get("Messages", []):
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_published_events_reach_a_rule_s_queue_intact(aws_url: str, queue: tuple[Any, str]) -> None:
    sqs, url = queue
    bus = url.rsplit("/", 1)[-1]
    counting = ScriptedBus()  # counts the calls on their way to moto

    def through(request: httpx.Request) -> httpx.Response:
        counting.calls.append(json.loads(request.content)["Entries"])
        response = httpx.HTTPTransport().handle_request(request)
        response.read()
        return response

    events = [expired(f"r{index:02d}") for index in range(25)]
    published = EventBridgePublisher(wire(aws_url, httpx.MockTransport(through)), bus, sleep=lambda _: None)

    assert published.publish(events) == []

    assert [len(call) for call in counting.calls] == [10, 10, 5]
    bodies = received(sqs, url, 25)
    assert sorted(body["detail"]["request_id"] for body in bodies) == [event.request_id for event in events]
    by_id = {event.request_id: event for event in events}
    for body in bodies:
        assert body["source"] == names.EVENT_SOURCE
        assert body["detail-type"] == names.RESERVATION_EXPIRED
        assert body["detail"] == json.loads(by_id[body["detail"]["request_id"]].model_dump_json())


def test_the_wire_sends_put_events_as_boto3_sends_it() -> None:
    sent: list[httpx.Request] = []

    def capture(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"FailedEntryCount": 0, "Entries": [{"EventId": "e1"}]})

    event = expired("r1")
    publisher(httpx.MockTransport(capture)).publish([event])

    client = boto3.client(
        "events", region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
    )  # fmt: skip
    theirs: list[Any] = []

    def capture_theirs(request: Any, **_: Any) -> None:
        theirs.append(request)
        raise Sent

    client.meta.events.register("before-send.events.PutEvents", capture_theirs)
    entry = event.put_events_entry(BUS) | {"Time": event.time.replace(microsecond=0)}
    with pytest.raises(Sent):
        client.put_events(Entries=[entry])

    (ours,) = sent
    assert ours.headers["x-amz-target"] == theirs[0].headers["X-Amz-Target"].decode()
    assert ours.headers["content-type"] == theirs[0].headers["Content-Type"].decode()
    assert json.loads(ours.content) == json.loads(theirs[0].body)
    assert ours.url == "https://events.us-east-1.amazonaws.com/"


# --- batches ---


def test_twenty_five_events_go_in_three_calls_of_at_most_ten() -> None:
    bus = ScriptedBus()

    assert publisher(httpx.MockTransport(bus)).publish([expired(f"r{i}") for i in range(25)]) == []

    assert [len(call) for call in bus.calls] == [10, 10, 5]
    assert bus.accepted == [f"r{i}" for i in range(25)]


def test_a_call_carries_at_most_256_kb_as_eventbridge_counts_entries() -> None:
    bus = ScriptedBus()
    events = [expired(f"r{i}", padding=60_000) for i in range(9)]

    assert publisher(httpx.MockTransport(bus)).publish(events) == []

    assert [len(call) for call in bus.calls] == [4, 4, 1]
    for call in bus.calls:
        assert sum(entry_size(entry) for entry in call) <= MAX_REQUEST_BYTES
    assert bus.accepted == [event.request_id for event in events]


def test_entry_size_counts_time_source_detail_type_detail_and_resources_in_utf8_bytes() -> None:
    entry = {"Time": 1, "Source": "paymaster", "DetailType": "CostRecorded", "Detail": '{"u":"é"}', "EventBusName": "b"}

    assert entry_size(entry) == 14 + 9 + 12 + 10
    assert entry_size(entry | {"Resources": ["arn:x", "arn:yy"]}) == 45 + 5 + 6
    assert entry_size({k: v for k, v in entry.items() if k != "Time"}) == 31


def test_an_event_over_256_kb_is_reported_without_being_sent() -> None:
    bus = ScriptedBus()
    huge, small = expired("huge", padding=MAX_REQUEST_BYTES), expired("small")

    (unpublished,) = publisher(httpx.MockTransport(bus)).publish([huge, small])

    assert (unpublished.event, unpublished.code, unpublished.final) == (huge, "EntryTooLarge", True)
    assert bus.accepted == ["small"]


# --- failures ---


def test_entries_failed_for_throttling_are_sent_again_alone_and_nothing_is_lost_or_doubled() -> None:
    bus = ScriptedBus(
        lambda entry, call: "ThrottlingException" if call == 1 and request_id(entry) in {"r3", "r7"} else None
    )

    assert publisher(httpx.MockTransport(bus)).publish([expired(f"r{i}") for i in range(10)]) == []

    assert [[request_id(entry) for entry in call] for call in bus.calls][1] == ["r3", "r7"]
    assert sorted(bus.accepted) == sorted(f"r{i}" for i in range(10))


def test_an_entry_that_keeps_failing_is_returned_after_its_attempts() -> None:
    bus = ScriptedBus(lambda entry, _: "InternalFailure" if request_id(entry) == "r2" else None)

    (unpublished,) = publisher(httpx.MockTransport(bus), entry_attempts=3).publish([expired(f"r{i}") for i in range(4)])

    assert (unpublished.event.request_id, unpublished.code) == ("r2", "InternalFailure")
    assert len(bus.calls) == 3
    assert sorted(bus.accepted) == ["r0", "r1", "r3"]


def test_an_entry_error_that_retrying_cannot_mend_is_returned_at_once() -> None:
    bus = ScriptedBus(lambda entry, _: "MalformedDetail" if request_id(entry) == "r1" else None)

    (unpublished,) = publisher(httpx.MockTransport(bus)).publish([expired("r0"), expired("r1")])

    assert (unpublished.event.request_id, unpublished.code, unpublished.final) == ("r1", "MalformedDetail", True)
    assert unpublished.message == "MalformedDetail (scripted)"
    assert len(bus.calls) == 1


@pytest.mark.parametrize(
    "refusal",
    [
        httpx.Response(400, json={"__type": "ThrottlingException", "message": "Rate exceeded"}),
        httpx.Response(500, json={"__type": "InternalException", "message": "oops"}),
        httpx.Response(503, text="Service Unavailable"),
    ],
    ids=["throttled", "internal", "unavailable"],
)
def test_a_whole_call_throttled_or_failing_is_sent_again(refusal: httpx.Response) -> None:
    bus = ScriptedBus()
    answers = iter([refusal])

    def flaky(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or bus(request)

    assert publisher(httpx.MockTransport(flaky)).publish([expired("r0"), expired("r1")]) == []

    assert bus.accepted == ["r0", "r1"]


def test_a_whole_call_that_keeps_failing_returns_every_event_with_the_bus_s_code() -> None:
    throttled = httpx.Response(400, json={"__type": "ThrottlingException", "message": "Rate exceeded"})
    events = [expired("r0"), expired("r1")]

    unpublished = publisher(httpx.MockTransport(lambda _: throttled)).publish(events)

    assert [(failure.event, failure.code, failure.message) for failure in unpublished] == [
        (event, "ThrottlingException", "Rate exceeded") for event in events
    ]


def test_a_refused_call_is_not_sent_again_and_returns_its_events() -> None:
    calls = Counter[str]()

    def denied(_: httpx.Request) -> httpx.Response:
        calls["PutEvents"] += 1
        return httpx.Response(400, json={"__type": "AccessDeniedException", "message": "not allowed"})

    (unpublished,) = publisher(httpx.MockTransport(denied)).publish([expired("r0")])

    assert (unpublished.code, unpublished.final) == ("AccessDeniedException", False)  # a grant can be fixed
    assert calls["PutEvents"] == 1


def test_a_bus_that_does_not_answer_returns_the_events_with_the_transport_s_error() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    (unpublished,) = publisher(httpx.MockTransport(hang), max_attempts=2).publish([expired("r0")])

    assert unpublished.code == "ReadTimeoutError"


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=35),
    script=st.dictionaries(
        st.tuples(st.integers(0, 34), st.integers(1, 4)),
        st.sampled_from(["ThrottlingException", "InternalFailure", "MalformedDetail"]),
    ),
)
def test_every_event_is_accepted_once_or_reported_failed_whatever_fails_when(
    count: int, script: dict[tuple[int, int], str]
) -> None:
    """`script[(event, attempt)]`: the code the event's `attempt`-th sending fails with."""
    sendings = Counter[str]()

    def fail(entry: dict[str, Any], _: int) -> str | None:
        rid = request_id(entry)
        sendings[rid] += 1
        return script.get((int(rid[1:]), sendings[rid]))

    bus = ScriptedBus(fail)
    events: list[PaymasterEvent] = [expired(f"r{i}") for i in range(count)]

    unpublished = publisher(httpx.MockTransport(bus), entry_attempts=3).publish(events)

    failed = [failure.event.request_id for failure in unpublished]
    assert len(bus.accepted) == len(set(bus.accepted))  # no event published twice
    assert sorted(bus.accepted + failed) == sorted(event.request_id for event in events)  # none lost
    assert all(sendings[rid] <= 3 for rid in sendings)


def test_without_a_bus_nothing_is_sent_and_nothing_fails() -> None:
    bus: EventPublisher = NoEventBus()

    assert bus.publish([expired("r0")]) == []


# --- `paymaster events tail`, reading the queue a rule delivers to ---


def test_events_tail_prints_each_published_event_on_one_line_and_deletes_it(
    aws_url: str, queue: tuple[Any, str]
) -> None:
    sqs, url = queue
    events = [
        model.model_validate(json.loads((PUBLISHED / name).read_text())["detail"]) for name, model in PUBLISHED_SAMPLES
    ]
    bus = url.rsplit("/", 1)[-1]
    assert EventBridgePublisher(wire(aws_url, httpx.HTTPTransport()), bus).publish(events) == []
    out = io.StringIO()

    assert tail_events(url, count=3, seconds=20, sqs=sqs, out=out) == 0

    lines = sorted(out.getvalue().splitlines())
    assert lines == sorted(
        [
            "2026-11-29T14:03:07.095Z  RequestDenied       e41f7a3c9d2b4f6a8c0e1d5b7a9f3c2e  search/ranker  gpt-4o"
            "  denied by search-monthly (insufficient_quota)",
            "2026-11-29T14:03:09.252Z  CostRecorded        b7c5e0f2a94d4c1e8f36a2d9c0e1f4a7  search/ranker  gpt-4o-mini"
            "  $0.000526",
            "2026-11-29T14:25:00.318Z  ReservationExpired  3a9c5e7f1b2d4c6e8a0f2b4d6c8e0a1f  search/ranker  gpt-4o-mini"
            "  $0.00081",
        ]
    )
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", []) == []
