"""The gateway's own CPU per request, end to end: a closed-loop signed client over real HTTP
against the real uvicorn process, as `make run` starts it.

    .venv/bin/python -m bench.http [--requests 3000] [--concurrency 8] [--delays 0,50]   (make bench-http)

The local stack runs with three matching rules (a monthly budget, requests and tokens per
minute); the OpenAI provider is pointed (`--real-endpoint`) at a mock upstream in this process
that answers at once or after a delay — a JSON completion, or 8 SSE content chunks, a finish,
a usage chunk and [DONE] — so the gateway's CPU is all that is measured: its process's user +
system time from /proc over the measured requests, divided by their number.

DynamoDB is, by default (`--store instant`), a stand-in in this process that answers the
gateway's three operations at once, as DynamoDB answers in milliseconds at no CPU of the
gateway's; `--store moto` uses the local stack's own, whose ~13 ms of CPU per request saturates
a core of this two-core machine and makes every process on it — the gateway included — slower
per unit of work, so its figures swing by ±40 % between runs. The client is cheap
on purpose: each connection sends one request signed once (SigV4 allows it within 5 minutes)
over kept-alive HTTP/1.1 and reads the answer with a small parser, so it takes little of the two
cores. Latency is the client's, from first byte sent to last byte read.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench._support import machine, reference_loop
from paymaster.client import SigV4Auth
from paymaster_local.credentials import session_for
from paymaster_local.real_endpoints import RealEndpointChoice
from paymaster_local.stack import GATEWAY_SERVER_FLAGS, LocalStack, free_port, local_stack

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
WARMUP = 300
CHUNKS = 8
PROFILE = "search-ranker"
MODEL = "gpt-4o-mini"
PROMPT = [{"role": "user", "content": "Summarise the platform team's LLM spend this month. " * 20}]


def bench_policy(upstream: str) -> dict[str, Any]:
    """The demo policy with its OpenAI provider at the mock upstream, keyless, and three rules that
    match every request of the search team and never refuse."""
    raw: dict[str, Any] = yaml.safe_load((REPO / "policy" / "demo.yaml").read_text())
    raw["providers"]["openai"] = {"kind": "openai", "base_url": upstream + "/v1"}
    raw["rules"] = [
        {"name": "monthly", "when": {"team": "search"}, "limit": 100_000, "unit": "cost_per_month", "per": ["team"]},
        {"name": "rpm", "when": {"team": "search"}, "limit": 10_000_000, "unit": "requests_per_minute",
         "per": ["team"]},
        {"name": "tpm", "when": {"team": "search"}, "limit": 10_000_000_000, "unit": "tokens_per_minute",
         "per": ["team"]},
    ]  # fmt: skip
    return raw


# ------------------------------------------------------------------ the mock upstream


def completion_json() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": 1,
            "model": MODEL,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "word " * CHUNKS}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 240, "completion_tokens": CHUNKS, "total_tokens": 240 + CHUNKS},
        }
    ).encode()


def sse_body() -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
        choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
        body = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
                "choices": choices, "usage": usage}  # fmt: skip
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    parts = [chunk({"role": "assistant", "content": ""})]
    parts += [chunk({"content": "word "}) for _ in range(CHUNKS)]
    parts += [chunk({}, "stop"), chunk({}, usage={"prompt_tokens": 240, "completion_tokens": CHUNKS,
                                                  "total_tokens": 240 + CHUNKS}), b"data: [DONE]\n\n"]  # fmt: skip
    return b"".join(parts)


async def serve_upstream(delay_s: float) -> tuple[asyncio.Server, str]:
    """An OpenAI chat endpoint that answers every request after `delay_s`, kept alive."""
    json_answer, sse_answer = completion_json(), sse_body()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(_header(head, b"content-length") or 0)
                body = await reader.readexactly(length)
                if delay_s:
                    await asyncio.sleep(delay_s)
                stream = b'"stream":true' in body
                payload = sse_answer if stream else json_answer
                kind = b"text/event-stream" if stream else b"application/json"
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + kind + b"\r\ncontent-length: "
                             + str(len(payload)).encode() + b"\r\n\r\n" + payload)  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def serve_instant_dynamodb() -> tuple[asyncio.Server, str]:
    """DynamoDB as the gateway sees it when it answers at once: every transaction commits, every
    read finds nothing (so no budget header), every query is empty."""
    answers = {
        b"DynamoDB_20120810.TransactWriteItems": b"{}",
        b"DynamoDB_20120810.BatchGetItem": b'{"Responses":{},"UnprocessedKeys":{}}',
        b"DynamoDB_20120810.Query": b'{"Items":[],"Count":0}',
    }

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(int(_header(head, b"content-length") or 0))
                payload = answers.get(_header(head, b"x-amz-target") or b"", b"{}")
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: "
                             + str(len(payload)).encode() + b"\r\n\r\n" + payload)  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


# ------------------------------------------------------------------ the client


def signed_request(stack: LocalStack, *, stream: bool) -> bytes:
    """One request's bytes, signed with the profile's key: sent again and again on a connection."""
    body = json.dumps({"model": MODEL, "messages": PROMPT, "max_tokens": 64, "stream": stream}).encode()
    request = httpx.Request("POST", stack.url + "/v1/chat/completions", content=body,
                            headers={"content-type": "application/json"})  # fmt: skip
    auth = SigV4Auth(session=session_for(stack.credentials, PROFILE))
    signed = next(auth.auth_flow(request))
    host = signed.url.netloc.decode()
    lines = [f"POST {signed.url.raw_path.decode()} HTTP/1.1", f"host: {host}"]
    lines += [f"{name}: {value}" for name, value in signed.headers.items() if name.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> int:
    """Reads one HTTP/1.1 answer (Content-Length or chunked); its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = _header(head, b"content-length")
    if length is not None:
        await reader.readexactly(int(length))
        return status
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return status


@dataclass
class Run:
    latencies_ms: list[float]
    statuses: dict[int, int]
    seconds: float


async def closed_loop(url: str, request: bytes, concurrency: int, count: int) -> Run:
    host, port = url.removeprefix("http://").split(":")
    remaining = [count]
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while remaining[0] > 0:
            remaining[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            status = await read_answer(reader)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(latencies, statuses, time.perf_counter() - started)


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def measure(
    stack: LocalStack, request: bytes, concurrency: int, count: int, gateway_pid: int
) -> tuple[Run, float]:
    await closed_loop(stack.url, request, concurrency, WARMUP)
    before = process_cpu_s(gateway_pid)
    run = await closed_loop(stack.url, request, concurrency, count)
    return run, (process_cpu_s(gateway_pid) - before) * 1000 / count


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def one_stack(args: argparse.Namespace, delay_ms: int) -> dict[str, tuple[Run, float]]:
    """A fresh local stack and upstream: each kind of answer measured, CPU ms per request."""
    loop = asyncio.new_event_loop()
    server, upstream = loop.run_until_complete(serve_upstream(delay_ms / 1000))
    store, store_url = loop.run_until_complete(serve_instant_dynamodb())
    environment = {"AWS_ENDPOINT_URL_DYNAMODB": store_url} if args.store == "instant" else {}
    measured: dict[str, tuple[Run, float]] = {}
    with tempfile.TemporaryDirectory(prefix="paymaster-http-bench-") as state:
        policy = Path(state) / "policy.yaml"
        policy.write_text(yaml.safe_dump(bench_policy(upstream)))
        with (
            (Path(state) / "gateway.log").open("wb") as log,
            local_stack(policy, port=free_port(), state_dir=Path(state), gateway_output=log,
                        real_endpoints=[RealEndpointChoice("openai", None)],
                        gateway_environment=environment) as stack,
        ):  # fmt: skip
            for label, stream in (("complete", False), ("stream", True)):
                request = signed_request(stack, stream=stream)
                measured[label] = loop.run_until_complete(
                    measure(stack, request, args.concurrency, args.requests, stack.pids["gateway"])
                )
    loop.run_until_complete(asyncio.sleep(0.2))  # the servers' handlers see the gateway hang up
    server.close()
    store.close()
    loop.close()
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--delays", default="0,50", help="upstream delays in ms, comma-separated")
    parser.add_argument("--store", choices=["instant", "moto"], default="instant", help="the DynamoDB it talks to")
    parser.add_argument("--repeat", type=int, default=3, help="fresh stacks per row: CPU time here varies by run")
    args = parser.parse_args(argv)
    delays = [int(delay) for delay in args.delays.split(",")]
    print(f"machine: {machine()}; {args.requests} requests per row after {WARMUP} warm-up, c={args.concurrency}, "
          f"3 rules, {len(json.dumps(PROMPT))} B prompt; gateway: uvicorn as make run starts it "
          f"({' '.join(GATEWAY_SERVER_FLAGS)}); DynamoDB: {args.store}; {args.repeat} runs per row")  # fmt: skip
    print(f"{'answer':10} {'upstream':>8} {'CPU ms/req':>10} {'p50 ms':>7} {'p99 ms':>7} {'req/s':>7}  statuses")
    cpu: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeat):
        for delay in delays:
            for label, (run, cpu_ms) in one_stack(args, delay).items():
                cpu.setdefault((label, delay), []).append(cpu_ms)
                print(f"{label:10} {delay:>6} ms {cpu_ms:>10.2f} {statistics.median(run.latencies_ms):>7.1f} "
                      f"{percentile(run.latencies_ms, 0.99):>7.1f} {len(run.latencies_ms) / run.seconds:>7.0f}  "
                      f"{run.statuses}", flush=True)  # fmt: skip
    print("CPU ms per request, median of the runs (min-max):")
    for (label, delay), values in sorted(cpu.items(), key=lambda item: (item[0][1], item[0][0])):
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(f"  {label:10} {delay:>4} ms upstream  {statistics.median(values):5.2f}  ({spread})")
    print(f"at the end: {reference_loop()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
