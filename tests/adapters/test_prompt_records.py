"""The prompt audit record in the DynamoDB store: a `Put` into the prompts table inside the
settlement's own TransactWriteItems, on the serialised stand-in — one request to settle with or
without it, one record however often the settlement is sent, never a settlement cancelled by it.
"""

import base64
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import httpx
import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from paymaster import schema
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_records import prompt_item
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.memory import MemorySettlementQueue
from paymaster.adapters.settlement_queue import SqsSettlementQueue, settlement_from_json, settlement_to_json
from paymaster.adapters.tokenizer import count_tokens
from paymaster.domain.audit import Output, PromptRecord, prompt_record
from paymaster.domain.chat import ChatRequest, Completion, Usage
from paymaster.domain.identity import Caller
from paymaster.domain.policy import MAX_AUDIT_BYTES, Audit
from paymaster.ports import CounterState, ProviderCall
from paymaster.services.admission import AdmissionService
from paymaster.services.chat import ChatService
from paymaster.services.routing import Router
from paymaster_local.resources import COUNTERS_TABLE, PROMPTS_TABLE
from tests.adapters.test_unknown_outcomes import CommitsThenTimesOut
from tests.policies import policy_with
from tests.reservations import BUDGET, NOW, RPM, holds, reservation, settlement

TRANSACT = "DynamoDB_20120810.TransactWriteItems"
CALLER = Caller("search", "ranker", "prod", "search-ranker", "arn:aws:sts::111111111111:assumed-role/ranker/i-1")
# SQS refuses a message past this (it now takes 1 MiB; a queue may still be set to the old 256 KiB).
SQS_MESSAGE_LIMIT = 256 * 1024
DYNAMODB_ITEM_LIMIT = 400 * 1024


def record_of(request_id: str, text: str = "hello", *, max_bytes: int = 4096, answer: str = "hi") -> PromptRecord:
    request = ChatRequest.model_validate({"model": "fixed-cost", "messages": [{"role": "user", "content": text}]})
    return prompt_record(
        request_id=request_id,
        hop=0,
        admitted_at=NOW,
        caller=CALLER,
        model="fixed-cost",
        deployment="openai/fixed-cost",
        request=request,
        output=Output(answer),
        audit=Audit(prompts=True, max_bytes=max_bytes),
    )


class Counting(httpx.BaseTransport):
    """Forwards every request, noting each one's operation and a transaction's items by table."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.operations: list[str] = []
        self.transactions: list[list[str]] = []  # the table of each item, per TransactWriteItems

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = request.headers["x-amz-target"]
        self.operations.append(target.rsplit(".", 1)[-1])
        if target == TRANSACT:
            items = json.loads(request.content)["TransactItems"]
            self.transactions.append([next(iter(item.values()))["TableName"] for item in items])
        return self._inner.handle_request(request)


@pytest.fixture
def tables(dynamodb: DynamoDBWire, aws_url: str) -> Any:
    """A fresh counters table (the `dynamodb` fixture) and prompts table; a boto3 client to read them."""
    client = boto3.client(
        "dynamodb", endpoint_url=aws_url, region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
    )
    client.create_table(**schema.PROMPTS.create_table_request(PROMPTS_TABLE))
    return client


@pytest.fixture
def counted(tables: Any, aws_url: str) -> tuple[DynamoDBCounterStore, Counting]:
    transport = Counting()
    wire = DynamoDBWire(
        transport, endpoint_url=aws_url, region="us-east-1", credentials=Credentials("local", "local"), max_attempts=1
    )
    return DynamoDBCounterStore(wire, COUNTERS_TABLE, prompts_table=PROMPTS_TABLE), transport


def stored_prompts(client: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.scan(TableName=PROMPTS_TABLE, ConsistentRead=True)["Items"]
    return items


def states(store: DynamoDBCounterStore, held: Any) -> list[tuple[int, int]]:
    found: dict[tuple[str, str], CounterState] = store.counters([(hold.pk, hold.sk) for hold in held])
    return [(state.committed, state.spent) for state in found.values()]


def test_a_settlement_without_a_record_is_the_same_transaction_as_before(
    counted: tuple[DynamoDBCounterStore, Counting], tables: Any
) -> None:
    store, transport = counted
    held = holds(BUDGET, RPM)
    store.reserve(reservation("r1", held))
    transport.operations.clear()

    assert store.settle(settlement("r1", held, 7)) is True

    assert transport.operations == ["TransactWriteItems"]
    assert transport.transactions[-1] == [COUNTERS_TABLE] * 3  # the reservation and its two counters
    assert stored_prompts(tables) == []


def test_an_opted_in_settlement_puts_its_record_in_the_same_one_request(
    counted: tuple[DynamoDBCounterStore, Counting], tables: Any
) -> None:
    store, transport = counted
    held = holds(BUDGET, RPM)
    record = record_of("r1", "Où est la tour Eiffel ?", answer="À Paris.")
    store.reserve(reservation("r1", held))
    transport.operations.clear()

    assert store.settle(replace(settlement("r1", held, 7), audit=record)) is True

    assert transport.operations == ["TransactWriteItems"]
    assert transport.transactions[-1] == [COUNTERS_TABLE] * 3 + [PROMPTS_TABLE]
    assert stored_prompts(tables) == [prompt_item(record)]
    item = stored_prompts(tables)[0]
    assert item[schema.PARTITION_KEY] == {"S": "PROMPT#r1"}
    assert item[schema.SORT_KEY] == {"S": "HOP#0"}
    assert item[schema.PROMPT] == {"S": '{"messages":[{"role":"user","content":"Où est la tour Eiffel ?"}]}'}
    assert item[schema.COMPLETION] == {"S": '{"content":"À Paris."}'}
    assert item[schema.TRUNCATED] == {"BOOL": False}
    assert item[schema.TTL_ATTRIBUTE] == {"N": str(int(record.expires_at.timestamp()))}
    assert states(store, held) == [(7, 7), (1, 1)]


def test_a_settlement_delivered_twice_leaves_one_record_and_counts_once(
    counted: tuple[DynamoDBCounterStore, Counting], tables: Any
) -> None:
    store, _ = counted
    held = holds(BUDGET)
    store.reserve(reservation("r1", held))
    settled = replace(settlement("r1", held, 7), audit=record_of("r1"))

    assert store.settle(settled) is True
    assert store.settle(settled) is False  # a retry, or the queue's second delivery

    assert stored_prompts(tables) == [prompt_item(record_of("r1"))]
    assert states(store, held) == [(7, 7)]


def test_a_record_already_there_never_cancels_the_settlement(
    counted: tuple[DynamoDBCounterStore, Counting], tables: Any
) -> None:
    """A condition on the record could cancel the money with it; the reservation's is the only one."""
    store, _ = counted
    held = holds(BUDGET)
    store.reserve(reservation("r1", held))
    tables.put_item(TableName=PROMPTS_TABLE, Item=prompt_item(record_of("r1", "an older record")))

    assert store.settle(replace(settlement("r1", held, 7), audit=record_of("r1", "this call"))) is True

    assert stored_prompts(tables) == [prompt_item(record_of("r1", "this call"))]
    assert states(store, held) == [(7, 7)]


def test_a_settlement_whose_answer_was_lost_is_sent_again_and_leaves_one_record(
    dynamodb: DynamoDBWire, tables: Any, aws_url: str
) -> None:
    transport = CommitsThenTimesOut(aws_url)
    wire = DynamoDBWire(
        transport,
        endpoint_url=aws_url,
        region="us-east-1",
        credentials=Credentials("local", "local"),
        max_attempts=3,
        sleep=lambda _: None,
    )
    store = DynamoDBCounterStore(wire, COUNTERS_TABLE, prompts_table=PROMPTS_TABLE, sleep=lambda _: None)
    held = holds(BUDGET)
    store.reserve(reservation("r1", held))
    transport.lost = 1

    assert store.settle(replace(settlement("r1", held, 7), audit=record_of("r1"))) is False  # landed the first time

    assert len(transport.sent) == 3  # the admission, the settlement, its repeat
    assert stored_prompts(tables) == [prompt_item(record_of("r1"))]
    assert states(store, held) == [(7, 7)]


def test_a_record_at_the_largest_cap_fits_its_item_and_its_transaction(
    counted: tuple[DynamoDBCounterStore, Counting], tables: Any
) -> None:
    store, _ = counted
    held = holds(BUDGET)
    store.reserve(reservation("r1", held))
    record = record_of("r1", "😀" * MAX_AUDIT_BYTES, max_bytes=MAX_AUDIT_BYTES, answer='"' * MAX_AUDIT_BYTES)

    assert store.settle(replace(settlement("r1", held, 7), audit=record)) is True

    (item,) = stored_prompts(tables)
    # DynamoDB's item size: names and values in UTF-8; a number is at most 21 bytes, a boolean 1.
    size = sum(len(name.encode()) + (len(value["S"].encode()) if "S" in value else 21) for name, value in item.items())
    assert record.truncated is True
    assert len(record.prompt.encode()) + len((record.completion or "").encode()) <= MAX_AUDIT_BYTES
    assert size < DYNAMODB_ITEM_LIMIT / 2


def test_a_store_without_a_prompts_table_refuses_a_record_before_sending_anything(
    tables: Any, wire_to: Callable[[str], DynamoDBWire], aws_url: str
) -> None:
    store = DynamoDBCounterStore(wire_to(aws_url), COUNTERS_TABLE)
    held = holds(BUDGET)
    store.reserve(reservation("r1", held))

    with pytest.raises(ValueError, match="no prompts table"):
        store.settle(replace(settlement("r1", held, 7), audit=record_of("r1")))

    assert states(store, held) == [(10, 0)]


# The settlement queue carries the record, within SQS's message size whatever the text.


def test_a_queued_settlement_carries_its_record_exactly() -> None:
    settled = replace(settlement("r1", holds(BUDGET), 7), audit=record_of("r1", "naïve \u2028 café", answer="ok"))

    again = settlement_from_json(settlement_to_json(settled))

    assert again.audit is not None
    assert prompt_item(again.audit) == prompt_item(settled.audit)  # type: ignore[arg-type]
    assert replace(again, audit=None) == replace(settled, audit=None)


@pytest.mark.parametrize("character", ['"', "\\", "\x01", "é", "😀", "a"])
def test_a_queued_settlement_with_a_record_at_the_largest_cap_fits_an_sqs_message(character: str) -> None:
    """JSON would escape a quote as two bytes and a control character as six; base64 is 4/3 of any text."""
    held = holds(BUDGET, RPM)
    record = record_of("r1", character * MAX_AUDIT_BYTES, max_bytes=MAX_AUDIT_BYTES, answer=character * MAX_AUDIT_BYTES)

    body = settlement_to_json(replace(settlement("r1", held, 7), audit=record))

    assert len(body.encode()) < SQS_MESSAGE_LIMIT


# The hot path, end to end through the DynamoDB store: still one request to admit, one to settle.


class Answering:
    def complete(self, call: ProviderCall) -> Completion:
        return Completion("À Paris.", "stop", Usage(30, 4))


@pytest.mark.parametrize("keeps_prompts", [False, True], ids=["opted-out", "opted-in"])
def test_an_opted_in_team_still_sends_one_request_to_admit_and_one_to_settle(
    counted: tuple[DynamoDBCounterStore, Counting], tables: Any, keeps_prompts: bool
) -> None:
    store, transport = counted
    policy = policy_with([BUDGET, RPM], audit={"search": {"prompts": keeps_prompts}})
    admission = AdmissionService(
        policy, store, count_tokens, lambda: datetime(2026, 11, 29, 18, 0, tzinfo=UTC), MemorySettlementQueue()
    )
    service = ChatService(policy, dict.fromkeys(policy.providers, Answering()), Router(policy, admission))
    request = ChatRequest.model_validate(
        {"model": "fixed-cost", "messages": [{"role": "user", "content": "Où ?"}], "max_tokens": 10}
    )

    exchange = service.plan(CALLER, request, "r1")
    admitting = list(transport.operations)
    service.complete(exchange)

    assert admitting == ["TransactWriteItems"]
    assert transport.operations == ["TransactWriteItems", "TransactWriteItems"]
    assert len(stored_prompts(tables)) == (1 if keeps_prompts else 0)


class RefusingSqs:
    def send_message(self, **_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": "no"}}, "SendMessage"
        )


def test_a_settlement_the_queue_refuses_is_logged_without_its_words(caplog: pytest.LogCaptureFixture) -> None:
    """The log keeps the settlement whole, to be replayed if the process dies with it in memory;
    the prompts table's words stay out of the logs, which have other readers."""
    settled = replace(settlement("r1", holds(BUDGET), 7), audit=record_of("r1", "the secret plan", answer="ok"))
    queue = SqsSettlementQueue(RefusingSqs, "https://sqs.local/q")

    queue.put(settled)

    assert queue.pending == 1
    (logged,) = [record.__dict__ for record in caplog.records if record.getMessage().startswith("settlement kept")]
    assert settlement_from_json(logged["settlement"]) == replace(settled, audit=None)
    assert "the secret plan" not in json.dumps(logged, default=str)
    assert base64.b64encode(b"the secret plan").decode() not in json.dumps(logged, default=str)
    assert logged["audit_record_bytes"] == settled.audit.prompt_bytes + settled.audit.completion_bytes  # type: ignore[union-attr]
