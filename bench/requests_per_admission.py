"""DynamoDB requests and write units per admitted request and per settlement, by matching rules
(0: a request no rule matches, reserved holding nothing so that its settlement is on record).

The gateway's own DynamoDB client talks to the serialised moto server; every HTTP request it
sends (retries included) is counted at its transport, by operation. Write units are
computed the way DynamoDB bills them: for each item written, the larger of its size before and
after, per started KB, doubled inside a transaction.

    .venv/bin/python -m bench.requests_per_admission
"""

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
from botocore.credentials import Credentials

from bench._support import dynamodb_client, machine, moto_dynamodb, policy_with_rules
from paymaster import schema
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.memory import MemorySettlementQueue
from paymaster.adapters.tokenizer import count_tokens
from paymaster.domain.chat import ChatRequest, Usage
from paymaster.domain.identity import Caller
from paymaster.domain.metering import Reported
from paymaster.ports import CallRecord
from paymaster.services.admission import AdmissionService
from paymaster_local.resources import COUNTERS_TABLE

# A caller as IAM names an assumed role's session, with two metadata labels and a user: what a
# reservation item records for the ledger, at a typical size.
CALLER = Caller(
    team="search",
    app="ranker",
    env="prod",
    principal="search-ranker",
    arn="arn:aws:sts::111111111111:assumed-role/search-ranker-prod/i-0a1b2c3d4e5f67890",
)
METADATA = {"feature": "query-rewrite", "tenant": "acme-eu"}
CALL = CallRecord("openai/gpt-4o-mini", ("openai/gpt-4o-mini",), "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", 812, 240)
REQUEST = ChatRequest.model_validate(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello " * 40}], "max_tokens": 256, "user": "u1"}
)
ROUNDS = 20


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute name lengths plus value sizes (numbers ~ digits/2 + 1)."""

    def value_size(value: dict[str, Any]) -> int:
        ((kind, inner),) = value.items()
        if kind == "S":
            return len(inner.encode())
        if kind == "N":
            return math.ceil(len(inner.lstrip("-").replace(".", "")) / 2) + 1
        if kind == "L":
            return 3 + sum(1 + value_size(element) for element in inner)
        if kind == "M":
            return 3 + sum(len(name.encode()) + 1 + value_size(element) for name, element in inner.items())
        return len(str(inner))

    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def sizes(reader: Any, keys: list[dict[str, Any]]) -> list[int]:
    return [item_size(reader.get_item(TableName=COUNTERS_TABLE, Key=key).get("Item", {})) for key in keys]


def write_units(before: list[int], after: list[int]) -> int:
    """Inside a transaction: 2 × per started KB of the larger of each item's old and new size."""
    return sum(2 * max(1, math.ceil(max(old, new) / 1024)) for old, new in zip(before, after, strict=True))


class CountingTransport(httpx.HTTPTransport):
    """The gateway's transport, counting every request it sends by DynamoDB operation."""

    def __init__(self, sent: Counter[str]) -> None:
        super().__init__()
        self._sent = sent

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._sent.update([request.headers["x-amz-target"].rsplit(".", 1)[-1]])
        return super().handle_request(request)


def measure(url: str, rules: int) -> str:
    sent: Counter[str] = Counter()
    wire = DynamoDBWire(
        CountingTransport(sent),
        endpoint_url=url,
        region="us-east-1",
        credentials=Credentials("local", "local"),
    )
    reader = dynamodb_client(url)
    service = AdmissionService(
        policy_with_rules(rules),
        DynamoDBCounterStore(wire, COUNTERS_TABLE),
        count_tokens,
        lambda: datetime.now(UTC),
        MemorySettlementQueue(),
    )
    admitting: Counter[str] = Counter()
    settling: Counter[str] = Counter()
    admit_units = settle_units = 0
    counter_sizes: list[int] = []  # each counter as the last settlement left it
    for round_ in range(ROUNDS):
        sent.clear()
        admitted = service.admit(CALLER, REQUEST, f"r{rules}-{round_}", METADATA)
        admitting += sent
        keys = [
            {
                schema.PARTITION_KEY: {"S": schema.reservation_pk(f"r{rules}-{round_}")},
                schema.SORT_KEY: {"S": schema.RESERVATION_SORT_KEY},
            }
        ]
        keys += [{schema.PARTITION_KEY: {"S": hold.pk}, schema.SORT_KEY: {"S": hold.sk}} for hold in admitted.holds]
        # Before this admission the reservation did not exist and the counters were as last settled.
        before = [0, *counter_sizes] if counter_sizes else [0] * len(keys)
        after_admission = sizes(reader, keys)
        admit_units += write_units(before, after_admission)
        sent.clear()
        service.settle(admitted, Reported(Usage(200, 100)), CALL)
        settling += sent
        after_settlement = sizes(reader, keys)
        settle_units += write_units(after_admission, after_settlement)
        counter_sizes = after_settlement[1:]
        reservation_sizes = (after_admission[0], after_settlement[0])
    return (
        f"{rules:>5}  {admitting.total() / ROUNDS:>18.2f}  {settling.total() / ROUNDS:>19.2f}"
        f"  {admit_units / ROUNDS:>13.1f}  {settle_units / ROUNDS:>14.1f}"
        f"  {reservation_sizes[0]:>5} B / {reservation_sizes[1]:>5} B   {dict(admitting)} / {dict(settling)}"
    )


def main() -> None:
    print(f"machine: {machine()}; {ROUNDS} admissions + settlements per row")
    print(f"{'rules':>5}  {'requests/admission':>18}  {'requests/settlement':>19}  {'WCU/admission':>13}", end="")
    print(f"  {'WCU/settlement':>14}  reservation item (held / settled)   operations (admission / settlement)")
    for rules in (0, 1, 3, 6):
        with moto_dynamodb() as url:
            print(measure(url, rules))


if __name__ == "__main__":
    main()
