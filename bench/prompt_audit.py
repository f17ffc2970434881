"""What an opted-in team's prompt audit record costs per settled call: the DynamoDB requests of the
settlement that carries it, the record's size and write units, and the size of the settlement-
retry message that would carry it if the store failed.

Each row admits and settles one chat call through the gateway's own counter store on the
serialised moto server, on a client that counts its requests; the team keeps prompts at the cap
named. Write units as DynamoDB bills them (`requests_per_admission.write_units`): the record is
a new item, written inside the settlement's transaction, so 2 × its started KB.

    .venv/bin/python -m bench.prompt_audit
"""

import math
from collections import Counter
from datetime import UTC, datetime

from botocore.credentials import Credentials

from bench._support import dynamodb_client, machine, moto_dynamodb
from bench.requests_per_admission import CALL, CALLER, METADATA, REQUEST, CountingTransport, item_size
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.memory import MemorySettlementQueue
from paymaster.adapters.settlement_queue import settlement_to_json
from paymaster.adapters.tokenizer import count_tokens
from paymaster.domain.audit import Output, prompt_record
from paymaster.domain.chat import ChatRequest, Usage
from paymaster.domain.metering import Reported
from paymaster.domain.policy import MAX_AUDIT_BYTES, Audit
from paymaster.ports import Settlement
from paymaster.services.admission import AdmissionService
from paymaster_local.resources import COUNTERS_TABLE, PROMPTS_TABLE
from tests.policies import policy_with

RULES = [
    {"name": "monthly", "unit": "cost_per_month", "limit": 2000, "per": ["team"]},
    {"name": "rpm", "unit": "requests_per_minute", "limit": 100_000, "per": ["team"]},
]
ANSWER = "Paris is the capital of France; the Eiffel Tower stands on the Champ de Mars. " * 4
# (label, max_bytes, prompt text, answer): a short call, and calls that fill each cap.
SHAPES = [
    ("typical call", 32_768, REQUEST.messages[0].text(), ANSWER),
    ("at the default cap", 32_768, "é" * 40_000, ANSWER * 100),
    ("at the largest cap", MAX_AUDIT_BYTES, "é" * 160_000, ANSWER * 400),
]


def measure(url: str, label: str, max_bytes: int, text: str, answer: str) -> str:
    sent: Counter[str] = Counter()
    wire = DynamoDBWire(
        CountingTransport(sent), endpoint_url=url, region="us-east-1", credentials=Credentials("local", "local")
    )
    store = KeepingStore(wire, COUNTERS_TABLE, prompts_table=PROMPTS_TABLE)
    policy = policy_with(RULES)
    service = AdmissionService(policy, store, count_tokens, lambda: datetime.now(UTC), MemorySettlementQueue())
    request = ChatRequest.model_validate(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "max_tokens": 256, "user": "u1"}
    )
    audit = Audit(prompts=True, max_bytes=max_bytes)
    admitted = service.admit(CALLER, request, f"audit-{max_bytes}-{len(text)}", METADATA)
    record = prompt_record(
        request_id=admitted.request_id,
        hop=0,
        admitted_at=admitted.now,
        caller=CALLER,
        model=admitted.model_name,
        deployment="openai/gpt-4o-mini",
        request=request,
        output=Output(answer),
        audit=audit,
    )
    sent.clear()
    service.settle(admitted, Reported(Usage(200, 100)), CALL, record)
    settling = sent.total()
    (item,) = dynamodb_client(url).scan(TableName=PROMPTS_TABLE, ConsistentRead=True)["Items"]
    size = item_size(item)
    record_units = 2 * math.ceil(size / 1024)
    assert store.settled is not None
    message = len(settlement_to_json(store.settled).encode())
    return (
        f"{label:<20} {max_bytes:>9,}  {record.prompt_bytes + record.completion_bytes:>9,}  {size:>9,} B"
        f"  {record_units:>6}  {settling:>9}  {message:>9,} B  {'yes' if record.truncated else 'no'}"
    )


class KeepingStore(DynamoDBCounterStore):
    """The gateway's store, keeping the last settlement it sent (to size its queue message)."""

    settled: Settlement | None = None

    def settle(self, settlement: Settlement) -> bool:
        self.settled = settlement
        return super().settle(settlement)


def main() -> None:
    print(f"machine: {machine()}; 2 rules; one call per row")
    print(
        f"{'call':<20} {'max_bytes':>9}  {'original':>9}  {'record':>11}  {'WCU':>6}  {'requests':>9}"
        f"  {'queued msg':>11}  truncated"
    )
    for shape in SHAPES:
        with moto_dynamodb() as url:
            print(measure(url, *shape))


if __name__ == "__main__":
    main()
