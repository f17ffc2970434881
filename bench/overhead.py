"""In-process gateway overhead per request: request/response handling, admission and settlement.

DynamoDB and the provider answer instantly at the transport level (`httpx.MockTransport` under
the gateway's own clients), so what is measured is paymaster's own work: parsing,
identity from the request context, tiktoken on a 4 KB prompt, planning holds, building,
signing and parsing the DynamoDB calls, the provider call's translation, settlement and the
response. The ASGI app is called directly, as uvicorn would, one request at a time.

    .venv/bin/python -m bench.overhead [--requests 3000]
"""

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from botocore.credentials import Credentials

from bench._support import machine, policy_with_rules
from paymaster import names
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.memory import MemorySettlementQueue
from paymaster.adapters.providers.openai_compatible import OpenAICompatibleProvider
from paymaster.adapters.request_context import RequestContextAuthenticator
from paymaster.adapters.tokenizer import count_tokens
from paymaster.api.app import create_app
from paymaster.domain.policy import Timeouts
from paymaster.services.admission import AdmissionService
from paymaster.services.chat import ChatService
from paymaster.services.embeddings import EmbeddingsService
from paymaster.services.identify import IdentifyService
from paymaster.services.routing import Router

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


def instant_dynamodb() -> DynamoDBWire:
    """The gateway's DynamoDB client, answered at once by the transport: {} or empty responses."""

    def answer(request: httpx.Request) -> httpx.Response:
        operation = request.headers["x-amz-target"].rsplit(".", 1)[-1]
        return httpx.Response(200, json={"Responses": {}} if operation == "BatchGetItem" else {})

    return DynamoDBWire(
        httpx.MockTransport(answer),
        endpoint_url="https://dynamodb.us-east-1.amazonaws.com",
        region="us-east-1",
        credentials=Credentials("bench", "bench"),
    )


def build_app(rules: int, *, one_request_at_a_time: bool = False) -> Any:
    policy = policy_with_rules(rules)
    store = DynamoDBCounterStore(instant_dynamodb(), "counters")
    admission = AdmissionService(policy, store, count_tokens, lambda: datetime.now(UTC), MemorySettlementQueue())
    router = Router(policy, admission)
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
        admission=admission,
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


async def measure(app: Any, count: int) -> tuple[list[float], float]:
    for _ in range(200):
        assert await one_request(app) == 200
    wall: list[float] = []
    cpu_start = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        await one_request(app)
        wall.append((time.perf_counter() - started) * 1000)
    return wall, (time.process_time() - cpu_start) * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    print(f"machine: {machine()}; {args.requests} requests per row, 4 KB prompt, non-streamed")
    print(f"{'mode':<24}  {'rules':>5}  {'p50 ms':>7}  {'p90 ms':>7}  {'p99 ms':>7}  {'CPU ms/request':>14}")
    for mode, inline in (("Lambda (on the loop)", True), ("local (worker threads)", False)):
        for rules in (1, 3, 6):
            wall, cpu = asyncio.run(measure(build_app(rules, one_request_at_a_time=inline), args.requests))
            cuts = statistics.quantiles(wall, n=100)
            print(f"{mode:<24}  {rules:>5}  {cuts[49]:>7.2f}  {cuts[89]:>7.2f}  {cuts[98]:>7.2f}  {cpu:>14.2f}")


if __name__ == "__main__":
    main()
