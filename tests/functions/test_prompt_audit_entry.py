"""Prompt audit records through the entry points, on the local stand-in's tables: the gateway
fed the REST API sample (streamed), the settlement-retry function fed a queued settlement that
carries a record, and a gateway that refuses to start without the table its policy needs."""

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from paymaster import names, schema
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.dynamodb_records import prompt_item
from paymaster.adapters.dynamodb_wire import DynamoDBWire
from paymaster.adapters.settings import Settings
from paymaster.adapters.settlement_queue import settlement_to_json
from paymaster.composition import build_gateway, settlement_retry
from paymaster.domain.audit import Output, prompt_record
from paymaster.domain.chat import ChatRequest
from paymaster.domain.identity import Caller
from paymaster.domain.policy import Audit, Policy
from paymaster_local.runner import LambdaContext, load_handler
from tests.functions.gateway import POLICY, RecordingProvider, as_lwa_request, lambda_entry
from tests.policies import demo_raw
from tests.reservations import BUDGET, NOW, holds, reservation, settlement

EVENT = Path(__file__).resolve().parents[2] / "events" / "sqs" / "settlement-retry.json"


def keeping_prompts() -> dict[str, Any]:
    raw = demo_raw()
    raw["teams"]["search"]["audit"] = {"prompts": True, "max_bytes": 2048, "retention_days": 7}
    return raw


def dynamodb(aws_url: str) -> Any:
    return boto3.client(
        "dynamodb", endpoint_url=aws_url, region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
    )


def prompts_in(aws_url: str, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = dynamodb(aws_url).scan(TableName=table, ConsistentRead=True)["Items"]
    return items


def test_a_streamed_call_of_an_opted_in_team_leaves_its_record_beside_the_settlement(
    event: dict[str, Any], aws: dict[str, str], aws_url: str, wire_to: Callable[[str], DynamoDBWire]
) -> None:
    store = DynamoDBCounterStore(
        wire_to(aws_url), aws[names.ENV_COUNTERS_TABLE], prompts_table=aws[names.ENV_PROMPTS_TABLE]
    )
    body = json.loads(event["body"])
    event["body"] = json.dumps(body | {"stream": True})

    response = lambda_entry(Policy.model_validate(keeping_prompts()), store, RecordingProvider()).request(
        **as_lwa_request(event)
    )

    assert response.status_code == 200
    (item,) = prompts_in(aws_url, aws[names.ENV_PROMPTS_TABLE])
    assert json.loads(item[schema.PROMPT]["S"]) == {"messages": body["messages"]}
    assert item[schema.COMPLETION] == {"S": '{"content":"1. paymaster"}'}  # what the stream delivered
    assert item[schema.PRINCIPAL] == {"S": event["requestContext"]["identity"]["userArn"]}
    assert (item[schema.TEAM], item[schema.MODEL]) == ({"S": "search"}, {"S": "gpt-4o-mini"})
    request_id = item[schema.REQUEST_ID]["S"]
    assert request_id == response.headers[names.HEADER_REQUEST_ID]


def test_the_same_call_of_a_team_that_did_not_opt_in_leaves_no_record(
    event: dict[str, Any], aws: dict[str, str], aws_url: str, wire_to: Callable[[str], DynamoDBWire]
) -> None:
    store = DynamoDBCounterStore(
        wire_to(aws_url), aws[names.ENV_COUNTERS_TABLE], prompts_table=aws[names.ENV_PROMPTS_TABLE]
    )
    event["body"] = json.dumps(json.loads(event["body"]) | {"stream": True})

    response = lambda_entry(Policy.model_validate(demo_raw()), store, RecordingProvider()).request(
        **as_lwa_request(event)
    )

    assert response.status_code == 200
    assert prompts_in(aws_url, aws[names.ENV_PROMPTS_TABLE]) == []


def test_the_settlement_retry_function_writes_the_record_a_queued_settlement_carries(
    aws: dict[str, str], aws_url: str, wire_to: Callable[[str], DynamoDBWire], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(names.ENV_POLICY_FILE, str(POLICY))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    settlement_retry.cache_clear()
    held = holds(BUDGET)
    DynamoDBCounterStore(wire_to(aws_url), aws[names.ENV_COUNTERS_TABLE]).reserve(reservation("r1", held))
    record = prompt_record(
        request_id="r1",
        hop=0,
        admitted_at=NOW,
        caller=Caller("search", "ranker", "prod", "search-ranker", "arn:aws:iam::111111111111:role/apps/search-ranker"),
        model="fixed-cost",
        deployment="openai/fixed-cost",
        request=ChatRequest.model_validate({"model": "fixed-cost", "messages": [{"role": "user", "content": "hé"}]}),
        output=Output("ok"),
        audit=Audit(prompts=True),
    )
    sample = json.loads(EVENT.read_text())
    sample["Records"][0]["body"] = settlement_to_json(replace(settlement("r1", held, 7), audit=record))
    handler = load_handler("settlement_retry")

    try:
        assert handler(sample, LambdaContext("settlement-retry", "c0ffee")) == {"batchItemFailures": []}
        assert handler(sample, LambdaContext("settlement-retry", "c0ffee")) == {"batchItemFailures": []}  # again
    finally:
        settlement_retry.cache_clear()

    assert prompts_in(aws_url, aws[names.ENV_PROMPTS_TABLE]) == [prompt_item(record)]


def test_a_gateway_whose_policy_keeps_prompts_refuses_to_start_without_the_prompts_table(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(keeping_prompts()))
    settings = Settings(
        policy_file=policy_file,
        counters_table="counters",
        ledger_table="ledger",
        settlement_queue_url="https://sqs.local/q",
    )

    with pytest.raises(ValueError, match=f"search keep prompts .* {names.ENV_PROMPTS_TABLE} is not set"):
        build_gateway(settings)
