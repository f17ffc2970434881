"""Overspend under concurrency: many threads, one budget, count what got through.

Scenario A (DESIGN's test): a budget with room for exactly 37 requests; 200 requests from 32
threads, each settled at its full reservation. Scenario B: the same budget, but requests settle
at 60 % of their reservation, so released money admits more requests while others race. Both
run the gateway's admission and settlement against the serialised moto DynamoDB.

    .venv/bin/python -m bench.concurrency
"""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
from botocore.credentials import Credentials

from bench._support import machine, moto_dynamodb
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.memory import MemorySettlementQueue
from paymaster.adapters.tokenizer import count_tokens
from paymaster.domain.chat import ChatRequest, Usage
from paymaster.domain.errors import BudgetExhaustedError
from paymaster.domain.identity import Caller
from paymaster.domain.metering import Reported
from paymaster.services.admission import AdmissionService
from paymaster_local.resources import COUNTERS_TABLE
from tests.policies import policy_with

CALLER = Caller(team="search", app="ranker", env="prod", principal="search-ranker", arn="arn")
REQUEST = ChatRequest.model_validate(
    {"model": "fixed-cost", "messages": [{"role": "user", "content": "spend"}], "max_tokens": 10}
)
CAP_MICRO_USD = 379  # 37 requests × 10 µUSD, + 9 that fit no 38th
REQUESTS, THREADS = 200, 32


def scenario(url: str, name: str, settle_fraction: float) -> str:
    wire = DynamoDBWire(httpx.HTTPTransport(), endpoint_url=url, region="us-east-1", credentials=Credentials("l", "l"))
    policy = policy_with([{"name": name, "limit": f"{CAP_MICRO_USD / 1_000_000:.6f}", "unit": "cost_per_month"}])
    service = AdmissionService(
        policy,
        DynamoDBCounterStore(wire, COUNTERS_TABLE),
        count_tokens,
        lambda: datetime.now(UTC),
        MemorySettlementQueue(),
    )

    def one(i: int) -> int:
        try:
            admitted = service.admit(CALLER, REQUEST, f"{name}-{i}")
        except BudgetExhaustedError:
            return 0
        service.settle(admitted, Reported(Usage(0, round(10 * settle_fraction))))
        return 1

    with ThreadPoolExecutor(THREADS) as pool:
        admitted = sum(pool.map(one, range(REQUESTS)))
    (usage,) = service.usage(CALLER)
    spent = round(float(usage.used) * 1_000_000)
    reserved = round(float(usage.reserved) * 1_000_000)
    overspend = max(0, spent + reserved - CAP_MICRO_USD)
    return (
        f"{name:<32} admitted {admitted:>3} of {REQUESTS}  spent {spent:>3} µUSD of {CAP_MICRO_USD}"
        f"  left reserved {reserved}  overspend {overspend} µUSD"
    )


def main() -> None:
    print(f"machine: {machine()}; {REQUESTS} requests from {THREADS} threads, one budget")
    with moto_dynamodb() as url:
        print(scenario(url, "A-settled-at-reservation", 1.0))
        print(scenario(url, "B-settled-at-60-percent", 0.6))


if __name__ == "__main__":
    main()
