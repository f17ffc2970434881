"""The soak: thousands of signed requests through the whole local stack, as `make run` runs it,
with provider faults mixed in — then every dollar accounted for.

    .venv/bin/python -m bench.soak [--requests 10000] [--concurrency 8] [--seed 1]   (make soak)

Two teams call chat, streamed chat and embeddings, and send requests their rules refuse (a
per-app rate limit, a per-user token quota), models they may not use and malformed bodies. Before
a call, one in ~12 scripts a fault at the fake provider for the model id of that kind of call
only (so a fault meant for a stream is taken by a stream): 429 and 500 (the route falls back),
a slow first byte (past the stream's 1 s first-byte timeout: it falls back; below it for a
non-streamed call: it is just slow), and streams cut after two pieces (charged what they
delivered, told in the stream).

Targets (exit status 1 if one is missed):
- no answer is a 5xx;
- each team's spend equals the sum of the costs echoed to its callers (`x-paymaster-cost-usd`,
  and the stream's closing `: x-paymaster-cost-usd:` comment), request by request;
- nothing is left reserved: every counter's committed equals its spent, no reservation held;
- every call answered 200 has its CostRecorded on the bus (and no other call has one), once the
  ledger has caught up: it is derived from the counters' stream, off the gateway's path, and the
  stand-in serialises its writes with the gateway's, so under load it falls behind — the soak
  waits while events keep coming and reports how far behind it was;
- the AWS stand-in's CPU per DynamoDB request over the last 1,000 requests within 20 % of the
  first 1,000, and its memory growth over the run no more than what it stores.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench._support import dynamodb_client, local_client, machine, reference_seconds
from paymaster import names, schema
from paymaster.client import SigV4Auth
from paymaster_local.aws import STATS_PATH
from paymaster_local.credentials import session_for
from paymaster_local.resources import COUNTERS_TABLE
from paymaster_local.stack import LocalStack, free_port, local_stack

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "policy" / "demo.yaml"
WINDOW = 1000  # requests per measured window (first and last)
FAULT_RATE = 1 / 12
CPU_TOLERANCE = 0.20
MEMORY_SLACK_MB = 4  # the allocator returns and takes memory in arenas
LEDGER_STALL_S = 60.0  # no CostRecorded for this long while some are missing: the ledger stalled
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
QUESTION = [{"role": "user", "content": "how much did the platform team spend this month"}]


@dataclass(frozen=True)
class Kind:
    """One kind of call: who sends it, to which model, how, and what faults it may meet."""

    name: str
    team: str
    profile: str
    weight: float
    path: str
    body: dict[str, Any]
    faulted_model: str | None = None  # the provider's model id faults are scripted for
    faults: tuple[dict[str, Any], ...] = ()

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


def chat(model: str, *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": QUESTION, "max_tokens": 40, "stream": stream, **extra}


KINDS = [
    Kind("search chat", "search", "search-ranker", 18, "/v1/chat/completions", chat("soak-chat"), "soak-chat",
         ({"status": 429}, {"status": 500}, {"first_byte_delay_s": 0.3})),
    Kind("search stream", "search", "search-ranker", 15, "/v1/chat/completions", chat("soak-stream", stream=True),
         "soak-stream", ({"status": 429}, {"status": 500}, {"first_byte_delay_s": 1.5}, {"cut_after": 2})),
    Kind("search embeddings", "search", "search-ranker", 10, "/v1/embeddings",
         {"model": "soak-embed", "input": ["platform spend", "per team caps"]}, "soak-embed",
         ({"status": 500}, {"status": 429})),
    Kind("support chat", "support", "support-assistant", 15, "/v1/chat/completions", chat("soak-support-chat"),
         "soak-support-chat", ({"status": 529}, {"status": 500}, {"status": 429})),
    Kind("support stream", "support", "support-assistant", 15, "/v1/chat/completions",
         chat("soak-support-stream", stream=True), "soak-support-stream",
         ({"status": 529}, {"first_byte_delay_s": 1.5}, {"cut_after": 2})),
    Kind("support embeddings", "support", "support-assistant", 7, "/v1/embeddings",
         {"model": "titan-embed-v2", "input": "budget alarms"}),
    Kind("search over its app's rate", "search", "search-ranker-dev", 7, "/v1/chat/completions", chat("soak-chat"),
         "soak-chat", ({"status": 429}, {"status": 500})),
    Kind("support over its user's quota", "support", "support-assistant", 5, "/v1/chat/completions",
         chat("soak-support-chat", user="noisy")),
    Kind("search model not allowed", "search", "search-ranker", 4, "/v1/chat/completions", chat("claude-haiku")),
    Kind("support malformed", "support", "support-assistant", 4, "/v1/chat/completions",
         {"model": "soak-support-chat"}),
]  # fmt: skip
BUDGETS = {"search": "search-budget", "support": "support-budget"}


def soak_policy() -> dict[str, Any]:
    """The demo policy's teams, providers and prices, with a model per kind of call (so that a
    scripted fault meets only the calls it is meant for), short provider timeouts and the
    soak's rules."""
    raw: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    for provider in raw["providers"].values():
        provider["timeouts"] = {"connect_s": 1, "first_byte_s": 1, "total_s": 20}
    models = raw["models"]
    gpt, sonnet, embed = models["gpt-4o-mini"], models["claude-sonnet-4"], models["text-embedding-3-small"]
    for name in ("soak-chat", "soak-stream"):
        models[name] = gpt | {"deployments": [{"provider": "openai", "model": name}], "fallbacks": ["nova-lite"]}
    for name in ("soak-support-chat", "soak-support-stream"):
        models[name] = sonnet | {
            "deployments": [
                {"provider": "anthropic", "model": name},
                {"provider": "bedrock-us-east-1", "model": f"{name}-bedrock", "priority": 1},
            ]
        }
    models["soak-embed"] = embed | {
        "deployments": [{"provider": "openai", "model": "soak-embed"}],
        "fallbacks": ["titan-embed-v2"],
    }
    raw["teams"]["search"]["models"] += ["soak-chat", "soak-stream", "soak-embed"]
    raw["teams"]["support"]["models"] += ["soak-support-chat", "soak-support-stream"]
    raw["rules"] = [
        {"name": "search-budget", "when": {"team": "search"}, "limit": 1000, "unit": "cost_per_month", "per": ["team"]},
        {"name": "support-budget", "when": {"team": "support"}, "limit": 1000, "unit": "cost_per_month",
         "per": ["team"]},
        {"name": "dev-rate", "when": {"app": "ranker-dev"}, "limit": 20, "unit": "requests_per_minute", "per": ["app"]},
        {"name": "noisy-quota", "when": {"team": "support", "user": "noisy"}, "limit": 1, "unit": "tokens_per_day",
         "per": ["user"]},
    ]  # fmt: skip
    return raw


@dataclass
class Answer:
    kind: str
    team: str
    status: int
    request_id: str
    cost: int  # micro-USD echoed; 0 when the answer says nothing
    basis: str | None
    stream_error: bool
    seconds: float


@dataclass
class Sample:
    done: int
    aws_cpu_s: float
    aws_rss_mb: float
    gateway_cpu_s: float
    dynamodb_requests: int
    reference_s: float  # the machine's speed then (`reference_seconds`): CPU figures scale with it


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def process_rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def micro_usd(text: str) -> int:
    return int(Decimal(text) * 1_000_000)


def trailer(text: str) -> tuple[int, str | None]:
    """The cost and basis a stream's closing comments echo."""
    found = dict(line[2:].split(": ", 1) for line in text.splitlines() if line.startswith(": x-paymaster-"))
    if "x-paymaster-cost-usd" not in found:
        return 0, None
    return micro_usd(found["x-paymaster-cost-usd"]), found.get("x-paymaster-billed-on")


class Soak:
    def __init__(self, stack: LocalStack, requests: int, concurrency: int, seed: int) -> None:
        self._stack = stack
        self._requests = requests
        self._concurrency = concurrency
        self._random = random.Random(seed)
        self._plan = self._random.choices(KINDS, weights=[kind.weight for kind in KINDS], k=requests)
        self._faults = [self._random.random() < FAULT_RATE for _ in range(requests)]
        self._fault_choice = [self._random.random() for _ in range(requests)]
        self._local = threading.local()
        self._lock = threading.Lock()
        self.answers: list[Answer] = []
        self.samples: list[Sample] = []
        self._fakes = httpx.Client(base_url=stack.providers_url, timeout=10)
        self._aws = httpx.Client(base_url=stack.aws_url, timeout=10)

    def run(self) -> float:
        self._sample(0)
        started = time.monotonic()
        with ThreadPoolExecutor(self._concurrency) as pool:
            for _ in pool.map(self._one, range(self._requests)):
                pass
        return time.monotonic() - started

    def _client(self, profile: str) -> httpx.Client:
        clients: dict[str, httpx.Client] = self._local.__dict__.setdefault("clients", {})
        if profile not in clients:
            auth = SigV4Auth(session=session_for(self._stack.credentials, profile))
            clients[profile] = httpx.Client(base_url=self._stack.url, auth=auth, timeout=60)
        return clients[profile]

    def _one(self, index: int) -> None:
        kind = self._plan[index]
        if self._faults[index] and kind.faults:
            fault = kind.faults[int(self._fault_choice[index] * len(kind.faults))]
            self._fakes.post("/_fake/faults", json={"model": kind.faulted_model, "faults": [fault]}).raise_for_status()
        started = time.monotonic()
        response = self._client(kind.profile).post(kind.path, json=kind.body)
        elapsed = time.monotonic() - started
        if kind.stream and response.status_code == 200:
            cost, basis = trailer(response.text)
            stream_error = '"error"' in response.text
        else:
            cost = micro_usd(response.headers.get("x-paymaster-cost-usd", "0"))
            basis, stream_error = response.headers.get("x-paymaster-billed-on"), False
        answer = Answer(kind.name, kind.team, response.status_code, response.headers.get("x-request-id", ""),
                        cost, basis, stream_error, elapsed)  # fmt: skip
        with self._lock:
            self.answers.append(answer)
            done = len(self.answers)
            if done % WINDOW == 0 or done == self._requests - WINDOW:
                self._sample(done)

    def _sample(self, done: int) -> None:
        pids = self._stack.pids
        stats = self._aws.get(STATS_PATH).raise_for_status().json()
        self.samples.append(
            Sample(
                done,
                process_cpu_s(pids["aws"]),
                process_rss_mb(pids["aws"]),
                process_cpu_s(pids["gateway"]),
                stats["dynamodb_requests"],
                reference_seconds(),
            )
        )


class EventsTail:
    """Reads the local bus's queue as `paymaster events tail` does, receiving and deleting, and
    keeps each event's detail-type and request id. A queue nobody reads grows without end, and
    moto's SQS counts every message on each send: the stand-in slowed by its own backlog."""

    def __init__(self, stack: LocalStack) -> None:
        self._sqs = local_client(stack.aws_url, "sqs")
        self._url = stack.events_queue_url
        self.seen: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-events-tail", daemon=True)
        self._thread.start()

    def _receive(self) -> int:
        messages = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        for message in messages:
            event = json.loads(message["Body"])
            # A BudgetThresholdCrossed names a crossing, not a request.
            self.seen.append((event["detail-type"], event["detail"].get("request_id", "")))
        if messages:
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            self._sqs.delete_message_batch(QueueUrl=self._url, Entries=entries)
        return len(messages)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._receive()

    def cost_recorded(self) -> set[str]:
        return {request_id for detail_type, request_id in list(self.seen) if detail_type == names.COST_RECORDED}

    def catch_up(self, served: set[str], stall_s: float = LEDGER_STALL_S) -> tuple[int, float]:
        """Waits until every call in `served` has its CostRecorded, or none has come for `stall_s`
        (the ledger stalled or lost some: the check fails). The ledger is derived from the stream
        and the stand-in serialises its writes with the gateway's, so under a soak's load it falls
        behind and catches up after the last answer. Returns (calls it was behind, seconds taken)."""
        started = time.monotonic()
        behind = len(served - self.cost_recorded())
        last_progress, last_count = started, len(self.seen)
        while not served <= self.cost_recorded() and time.monotonic() - last_progress < stall_s:
            time.sleep(1)
            if len(self.seen) != last_count:
                last_progress, last_count = time.monotonic(), len(self.seen)
        return behind, time.monotonic() - started

    def drain(self) -> None:
        """Stops the reader once the queue has been empty for three receives in a row."""
        self._stop.set()
        self._thread.join()
        empty = 0
        while empty < 3:
            empty = 0 if self._receive() else empty + 1


def settled_state(stack: LocalStack) -> tuple[dict[str, int], int, int, dict[str, int]]:
    """(spent per team budget in µUSD, reservations still held, counters holding more than they
    spent, cost charged per request id) as the counters table has them."""
    dynamodb = dynamodb_client(stack.aws_url)
    spent: dict[str, int] = {}
    held = unsettled = 0
    charged: dict[str, int] = defaultdict(int)
    for page in dynamodb.get_paginator("scan").paginate(TableName=COUNTERS_TABLE):
        for item in page["Items"]:
            pk = item[schema.PARTITION_KEY]["S"]
            if pk.startswith(schema.reservation_pk("")):
                held += item[schema.STATE]["S"] == schema.HELD
                request_id, _ = schema.split_hop(schema.request_id_of(pk))
                charged[request_id] += int(item.get(schema.COST, {"N": "0"})["N"])
                continue
            committed = int(item.get(schema.COMMITTED, {"N": "0"})["N"])
            settled = int(item.get(schema.SPENT, {"N": "0"})["N"])
            unsettled += committed != settled
            for team, rule in BUDGETS.items():
                if pk.startswith(schema.counter_pk(rule, "")):
                    spent[team] = spent.get(team, 0) + settled
    return spent, held, unsettled, charged


def wait_until_settled(stack: LocalStack, timeout_s: float = 60) -> None:
    """Streams a client left and queued settlements land a moment after their answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _, held, unsettled, _ = settled_state(stack)
        if not held and not unsettled:
            return
        time.sleep(1)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(soak: Soak, stack: LocalStack, tail: EventsTail, seconds: float, requests: int, concurrency: int) -> bool:
    answers = soak.answers
    wait_until_settled(stack)
    served = {answer.request_id for answer in answers if answer.status == 200}
    behind, catch_up_s = tail.catch_up(served)
    tail.drain()
    cost_events = Counter(rid for detail_type, rid in tail.seen if detail_type == names.COST_RECORDED)
    spent, held, unsettled, charged = settled_state(stack)
    echoed: dict[str, int] = defaultdict(int)
    echoed_by_request: dict[str, int] = {}
    for answer in answers:
        echoed[answer.team] += answer.cost
        echoed_by_request[answer.request_id] = answer.cost
    mismatched = sorted(
        rid for rid in set(charged) | set(echoed_by_request) if charged.get(rid, 0) != echoed_by_request.get(rid, 0)
    )
    by_status = Counter(answer.status for answer in answers)
    by_basis = Counter(answer.basis or "-" for answer in answers)
    five_xx = sum(count for status, count in by_status.items() if status >= 500)
    stream_errors = sum(answer.stream_error for answer in answers)

    first = next(sample for sample in soak.samples if sample.done == WINDOW)
    start = soak.samples[0]
    last_start = next(sample for sample in soak.samples if sample.done == requests - WINDOW)
    end = soak.samples[-1]

    def cpu_per_call(a: Sample, b: Sample) -> float:
        return (b.aws_cpu_s - a.aws_cpu_s) * 1000 / max(1, b.dynamodb_requests - a.dynamodb_requests)

    first_cpu, last_cpu = cpu_per_call(start, first), cpu_per_call(last_start, end)
    # This VM's speed moves by half within an hour: compare the windows at the same speed.
    first_speed, last_speed = (
        (start.reference_s + first.reference_s) / 2,
        (last_start.reference_s + end.reference_s) / 2,
    )
    drift = (last_cpu / last_speed) / (first_cpu / first_speed) - 1
    gateway_ms = (end.gateway_cpu_s - start.gateway_cpu_s) * 1000 / requests
    # The stand-in keeps every reservation, as DynamoDB does (30 days): its memory grows with what
    # it stores. Flat means it grows by that and nothing more — no faster at the end than after
    # the first window (which includes the warm-up), as it did when each call copied the tables.
    second = next(sample for sample in soak.samples if sample.done == 2 * WINDOW)
    first_growth, last_growth = second.aws_rss_mb - first.aws_rss_mb, end.aws_rss_mb - last_start.aws_rss_mb
    per_item_kb = (end.aws_rss_mb - first.aws_rss_mb) * 1024 / max(1, len(charged) - WINDOW)

    latencies = [answer.seconds * 1000 for answer in answers]
    print(f"machine: {machine()}; {requests} requests at concurrency {concurrency} in {seconds:.0f} s "
          f"({requests / seconds:.1f}/s); policy: the demo's teams and prices, {len(KINDS)} kinds of call")  # fmt: skip
    print(
        f"answers by status: {dict(sorted(by_status.items()))}; streams that ended in an error event: {stream_errors}"
    )
    print(f"billed on: {dict(sorted(by_basis.items()))}")
    print(f"latency ms p50 {statistics.median(latencies):.0f}  p99 {percentile(latencies, 0.99):.0f}  "
          f"max {max(latencies):.0f}")  # fmt: skip
    for team in BUDGETS:
        print(f"{team:8} spent {spent.get(team, 0):>9} µUSD   echoed to its callers {echoed[team]:>9} µUSD")
    print(f"requests whose charge differs from what their answer echoed: {len(mismatched)}"
          + (f" (first: {mismatched[:5]})" if mismatched else ""))  # fmt: skip
    print(f"left reserved: {held} reservations held, {unsettled} counters with committed != spent")
    print(f"stand-in CPU per DynamoDB request: first {WINDOW} requests {first_cpu:.2f} ms, last {WINDOW} "
          f"{last_cpu:.2f} ms; the reference loop took {first_speed:.2f} s and {last_speed:.2f} s then, so "
          f"at one speed {drift * 100:+.0f} %; {end.dynamodb_requests - start.dynamodb_requests} DynamoDB "
          "requests in all")  # fmt: skip
    print(f"stand-in memory: {start.aws_rss_mb:.0f} MB at start, {first.aws_rss_mb:.0f} MB after {WINDOW}, "
          f"{end.aws_rss_mb:.0f} MB at the end; +{first_growth:.1f} MB over requests {WINDOW}-{2 * WINDOW}, "
          f"+{last_growth:.1f} MB over the last {WINDOW}; {len(charged)} reservations stored, "
          f"~{per_item_kb:.1f} KB each")  # fmt: skip
    print(f"gateway CPU per request (the whole process, provider faults and retries included): {gateway_ms:.2f} ms")
    print(f"events on the bus: {dict(sorted(Counter(detail_type for detail_type, _ in tail.seen).items()))}; "
          f"CostRecorded for {len(cost_events)} requests ({sum(cost_events.values()) - len(cost_events)} published "
          f"twice), {len(served)} answered 200")  # fmt: skip
    print(f"the ledger (stream → entry → CostRecorded) was {behind} calls behind when the money was settled, "
          f"and caught up {catch_up_s:.0f} s later ({behind / max(catch_up_s, 1):.0f} calls/s)")  # fmt: skip

    checks = {
        "no 5xx": five_xx == 0,
        "each team's spend equals what its callers were told": all(spent.get(t, 0) == echoed[t] for t in BUDGETS)
        and not mismatched,
        "nothing left reserved": held == 0 and unsettled == 0,
        "one CostRecorded per answered call (at least once, none for any other)": set(cost_events) == served,
        "stand-in CPU per call flat (±20 % at one machine speed)": abs(drift) <= CPU_TOLERANCE,
        "stand-in memory flat (the last window grows no more than the second, +25 %)": (
            last_growth <= first_growth * 1.25 + MEMORY_SLACK_MB
        ),
    }
    for name, passed in checks.items():
        print(f"  {'PASS' if passed else 'FAIL'}  {name}")
    return all(checks.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.requests < 2 * WINDOW:
        parser.error(f"--requests must be at least {2 * WINDOW}: the first and last {WINDOW} are compared")
    with tempfile.TemporaryDirectory(prefix="paymaster-soak-") as state:
        policy = Path(state) / "soak-policy.yaml"
        policy.write_text(yaml.safe_dump(soak_policy()))
        with (
            (Path(state) / "gateway.log").open("wb") as log,
            local_stack(policy, port=free_port(), state_dir=Path(state), gateway_output=log) as stack,
        ):
            soak = Soak(stack, args.requests, args.concurrency, args.seed)
            tail = EventsTail(stack)
            seconds = soak.run()
            passed = report(soak, stack, tail, seconds, args.requests, args.concurrency)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
