"""In-process gateway overhead per request: request/response handling, admission and settlement.

DynamoDB and the provider answer instantly at the transport level (`httpx.MockTransport` under
the gateway's own clients), so what is measured is paymaster's own work: parsing,
identity from the request context, tiktoken on a 4 KB prompt, planning holds, building,
signing and parsing the DynamoDB calls, the provider call's translation, settlement and the
response. The ASGI app is called directly, as uvicorn would, one request at a time.

With --denied, every request is refused by its rule (the admission transaction is cancelled)
and answered 429: once without events, once publishing its RequestDenied through the gateway's
EventBridge client to a bus that answers at once — what the publish costs the gateway itself
(building, signing, the worker thread), not EventBridge's round trip.

With --metrics, the same app without and with its EMF metrics (written to /dev/null, as Lambda's
stdout takes them without waiting), measured in alternating rounds of one run so that the
machine's drift falls on both; then the EMF line of one request on its own.

    .venv/bin/python -m bench.overhead [--requests 3000] [--denied | --metrics]
"""

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import UTC, datetime
from functools import cache
from typing import Any, TextIO

import httpx
from botocore.credentials import Credentials

from bench._support import machine, policy_with_rules
from paymaster import names
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.emf_metrics import EmfMetrics
from paymaster.adapters.event_bus import EventBridgePublisher, EventBridgeWire
from paymaster.adapters.memory import MemoryLedger, MemorySettlementQueue
from paymaster.adapters.providers.openai_compatible import OpenAICompatibleProvider
from paymaster.adapters.request_context import RequestContextAuthenticator
from paymaster.adapters.tokenizer import count_tokens
from paymaster.api.app import create_app
from paymaster.composition import DENIAL_EVENT_TIMEOUT
from paymaster.domain.cardinality import metric_dimensions
from paymaster.domain.chat import Usage
from paymaster.domain.metering import Bill
from paymaster.domain.policy import Timeouts
from paymaster.ports import RequestMetrics
from paymaster.services.admission import AdmissionService
from paymaster.services.chat import ChatService
from paymaster.services.denials import DenialEvents
from paymaster.services.embeddings import EmbeddingsService
from paymaster.services.identify import IdentifyService
from paymaster.services.routing import Router
from paymaster.services.usage import UsageService

PROMPT = ("The quarterly platform report lists each team's spend, caps and forecasts. " * 60)[:4096]
BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 256}
).encode()
CONTEXT = json.dumps(
    {"requestId": "bench", "identity": {"userArn": "arn:aws:sts::111111111111:assumed-role/search-ranker/s"}}
)
COMPLETION = {
    "id": "chatcmpl-x",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 900, "completion_tokens": 2, "total_tokens": 902},
}


@cache
def dev_null() -> TextIO:
    """Where the metrics go: a write and a flush per request, as to Lambda's stdout, unread."""
    return open(os.devnull, "w")  # open for the process's whole life


def instant_dynamodb(*, refusing: bool = False) -> DynamoDBWire:
    """The gateway's DynamoDB client, answered at once by the transport: {} or empty responses;
    `refusing`: every admission cancelled by its counters, each full at its cap."""

    def answer(request: httpx.Request) -> httpx.Response:
        operation = request.headers["x-amz-target"].rsplit(".", 1)[-1]
        if refusing and operation == "TransactWriteItems":
            holds = len(json.loads(request.content)["TransactItems"]) - 1
            full = {"Code": "ConditionalCheckFailed", "Item": {names.COMMITTED: {"N": str(10**12)}}}
            return httpx.Response(
                400,
                json={
                    "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                    "message": "Transaction cancelled",
                    "CancellationReasons": [{"Code": "None"}] + [full] * holds,
                },
            )
        return httpx.Response(200, json={"Responses": {}} if operation == "BatchGetItem" else {})

    return DynamoDBWire(
        httpx.MockTransport(answer),
        endpoint_url="https://dynamodb.us-east-1.amazonaws.com",
        region="us-east-1",
        credentials=Credentials("bench", "bench"),
    )


def instant_bus() -> EventBridgePublisher:
    """The gateway's EventBridge publisher, as composed for denials, answered at once."""
    wire = EventBridgeWire(
        httpx.MockTransport(lambda _: httpx.Response(200, json={"FailedEntryCount": 0, "Entries": [{"EventId": "e"}]})),
        endpoint_url="https://events.us-east-1.amazonaws.com",
        region="us-east-1",
        credentials=Credentials("bench", "bench"),
        timeout=DENIAL_EVENT_TIMEOUT,
        max_attempts=2,
    )
    return EventBridgePublisher(wire, "paymaster-events", entry_attempts=1)


def build_app(
    rules: int,
    *,
    one_request_at_a_time: bool = False,
    refusing: bool = False,
    events: bool = False,
    metrics: bool = False,
) -> Any:
    policy = policy_with_rules(rules)
    store = DynamoDBCounterStore(instant_dynamodb(refusing=refusing), "counters")
    admission = AdmissionService(policy, store, count_tokens, lambda: datetime.now(UTC), MemorySettlementQueue())
    router = Router(
        policy,
        admission,
        denials=DenialEvents(instant_bus()) if events else None,
        metrics=EmfMetrics(metric_dimensions(policy), names.METRICS_NAMESPACE, dev_null()) if metrics else None,
    )
    provider = OpenAICompatibleProvider(
        httpx.MockTransport(lambda _: httpx.Response(200, json=COMPLETION)),
        base_url="https://provider.invalid/v1",
        api_key=lambda: "key",
        timeouts=Timeouts(),
    )
    return create_app(
        identify=IdentifyService(RequestContextAuthenticator(), policy),
        chat=ChatService(policy, dict.fromkeys(policy.providers, provider), router),
        embeddings=EmbeddingsService({}, router),
        usage=UsageService(admission, MemoryLedger(), lambda: datetime.now(UTC)),
        max_body_bytes=4 * 1024 * 1024,
        one_request_at_a_time=one_request_at_a_time,
    )


async def one_request(app: Any) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [
            (b"host", b"gateway.example"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
            (names.HEADER_REQUEST_CONTEXT.encode(), CONTEXT.encode()),
        ],
        "server": ("127.0.0.1", 443),
        "client": ("127.0.0.1", 50000),
    }
    messages = [{"type": "http.request", "body": BODY, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def measure(app: Any, count: int, status: int = 200) -> tuple[list[float], float]:
    """`count` requests timed, after 200 to warm up (each answered `status`)."""
    await warm(app, status)
    return await timed(app, count)


async def warm(app: Any, status: int = 200) -> None:
    for _ in range(200):
        assert await one_request(app) == status


async def timed(app: Any, count: int) -> tuple[list[float], float]:
    """Each request's wall time (ms) and the CPU time per request (ms)."""
    wall: list[float] = []
    cpu_start = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        await one_request(app)
        wall.append((time.perf_counter() - started) * 1000)
    return wall, (time.process_time() - cpu_start) * 1000 / count


def with_and_without_metrics(requests: int, rounds: int = 20) -> None:
    """Lambda mode: the app without metrics and with them, in alternating rounds. CPU per request
    is each app's median over the rounds, and Δ the median of the rounds' paired differences:
    a burst of load from elsewhere on the machine moves one round, not the figure."""
    columns = ("p50 ms", "+metrics", "Δ p50 ms", "CPU ms", "+metrics", "Δ CPU ms")
    print(f"{'rules':>5}  " + "  ".join(f"{column:>8}" for column in columns))
    for rules in (1, 3, 6):
        apps = {
            False: build_app(rules, one_request_at_a_time=True),
            True: build_app(rules, one_request_at_a_time=True, metrics=True),
        }
        for app in apps.values():
            asyncio.run(warm(app))
        wall: dict[bool, list[float]] = {False: [], True: []}
        cpu: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):
            for metrics, app in apps.items():
                round_wall, round_cpu = asyncio.run(timed(app, requests // rounds))
                wall[metrics] += round_wall
                cpu[metrics].append(round_cpu)
        p50 = {metrics: statistics.median(wall[metrics]) for metrics in apps}
        median_cpu = {metrics: statistics.median(cpu[metrics]) for metrics in apps}
        added = statistics.median(with_ - without for without, with_ in zip(cpu[False], cpu[True], strict=True))
        figures = (p50[False], p50[True], p50[True] - p50[False], median_cpu[False], median_cpu[True], added)
        print(f"{rules:>5}  " + "  ".join(f"{figure:>8.3f}" for figure in figures))
    metrics = EmfMetrics(metric_dimensions(policy_with_rules(1)), names.METRICS_NAMESPACE, dev_null())
    served = RequestMetrics(
        "search", "ranker", "prod", "gpt-4o-mini", Bill(Usage(900, 2), 136, "provider_usage"), latency_ms=3
    )
    count = 20_000
    started = time.process_time()
    for _ in range(count):
        metrics.emit(served)
    alone = (time.process_time() - started) * 1e6 / count
    print(f"one served request's EMF line alone (build, serialise, write, flush): {alone:.1f} µs CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--denied", action="store_true", help="every request refused (429), with and without events")
    parser.add_argument("--metrics", action="store_true", help="Lambda mode, without and with EMF metrics")
    args = parser.parse_args()
    if args.metrics:
        print(f"machine: {machine()}; {args.requests} requests per row and app, 4 KB prompt, non-streamed")
        with_and_without_metrics(args.requests)
        return
    what = "refused (429)" if args.denied else "non-streamed"
    print(f"machine: {machine()}; {args.requests} requests per row, 4 KB prompt, {what}")
    print(f"{'mode':<24}  {'rules':>5}  {'p50 ms':>7}  {'p90 ms':>7}  {'p99 ms':>7}  {'CPU ms/request':>14}")
    rows = (
        [("Lambda, no events", True, False), ("Lambda, RequestDenied", True, True)]
        if args.denied
        else [("Lambda (on the loop)", True, False), ("local (worker threads)", False, False)]
    )
    for mode, inline, events in rows:
        for rules in (1, 3, 6):
            app = build_app(rules, one_request_at_a_time=inline, refusing=args.denied, events=events)
            wall, cpu = asyncio.run(measure(app, args.requests, 429 if args.denied else 200))
            cuts = statistics.quantiles(wall, n=100)
            print(f"{mode:<24}  {rules:>5}  {cuts[49]:>7.2f}  {cuts[89]:>7.2f}  {cuts[98]:>7.2f}  {cpu:>14.2f}")


if __name__ == "__main__":
    main()
