"""An app's calls travel through the local stack with the clients apps really use."""

import time
from collections.abc import Callable

import boto3
import pytest
from openai import AsyncOpenAI, OpenAI

from paymaster_local.stack import LocalStack

SEARCH = "search-ranker"  # team search: gpt-4o-mini (fake OpenAI), nova-lite (fake Bedrock)
SUPPORT = "support-assistant"  # team support: claude-haiku and nova-lite (fake Bedrock), claude-sonnet-4
PROMPT = " ".join(f"word{i}" for i in range(30))  # 31 deltas, 20 ms apart at the fake


def test_openai_sdk_gets_a_completion_from_the_openai_provider(openai_for: Callable[[str], OpenAI]) -> None:
    completion = openai_for(SEARCH).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello gateway"}]
    )

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == "Echo: hello gateway"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    assert completion.usage.prompt_tokens > 0


def test_completion_response_names_the_request_and_the_deployment(openai_for: Callable[[str], OpenAI]) -> None:
    raw = openai_for(SEARCH).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )

    assert raw.headers["x-paymaster-deployment"] == "openai/gpt-4o-mini"
    assert raw.parse().id == f"chatcmpl-{raw.headers['x-request-id']}"


def test_bedrock_deployment_answers_through_the_same_path(openai_for: Callable[[str], OpenAI]) -> None:
    completion = openai_for(SUPPORT).chat.completions.create(
        model="claude-haiku",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello bedrock"}],
    )

    assert completion.choices[0].message.content == "Echo: hello bedrock"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


@pytest.mark.parametrize(("profile", "model"), [(SEARCH, "gpt-4o-mini"), (SUPPORT, "claude-haiku")])
def test_stream_arrives_incrementally_with_usage_when_asked(
    openai_for: Callable[[str], OpenAI], profile: str, model: str
) -> None:
    stream = openai_for(profile).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    arrivals: list[float] = []
    text = ""
    usage = None
    finish = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            text += chunk.choices[0].delta.content
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
        if chunk.usage is not None:
            usage = chunk.usage

    assert text == f"Echo: {PROMPT}"
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens == len(text.split())
    # The fake sends a word every 20 ms; a buffered answer would arrive all at once.
    assert len(arrivals) == len(text.split())
    assert arrivals[-1] - arrivals[0] >= 0.3


def test_stream_without_include_usage_has_no_usage_chunk(openai_for: Callable[[str], OpenAI]) -> None:
    chunks = list(
        openai_for(SEARCH).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "two words"}], stream=True
        )
    )

    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Echo: two words"


@pytest.mark.anyio
async def test_async_client_completes_and_streams(async_openai_for: Callable[[str], AsyncOpenAI]) -> None:
    client = async_openai_for(SEARCH)

    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "async hello"}]
    )
    stream = await client.chat.completions.create(
        model="nova-lite", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    arrivals: list[float] = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())

    assert completion.choices[0].message.content == "Echo: async hello"
    assert len(arrivals) == len(f"Echo: {PROMPT}".split())
    assert arrivals[-1] - arrivals[0] >= 0.3


def test_models_lists_what_the_team_may_use(openai_for: Callable[[str], OpenAI]) -> None:
    assert sorted(model.id for model in openai_for(SEARCH).models.list()) == [
        "gpt-4o",
        "gpt-4o-mini",
        "nova-lite",
        "text-embedding-3-small",
        "titan-embed-v2",
    ]
    assert sorted(model.id for model in openai_for(SUPPORT).models.list()) == [
        "claude-haiku",
        "claude-sonnet-4",
        "cohere-embed-english",
        "llama-3-3-70b",
        "nova-lite",
        "titan-embed-v2",
    ]


def test_boto3_talks_to_the_bedrock_fake(stack: LocalStack) -> None:
    bedrock = boto3.client(
        "bedrock-runtime",
        endpoint_url=stack.providers_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )

    answer = bedrock.converse(
        modelId="us.amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": "hi boto3"}]}]
    )
    events = list(
        bedrock.converse_stream(
            modelId="us.amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": "hi stream"}]}]
        )["stream"]
    )

    assert answer["output"]["message"]["content"][0]["text"] == "Echo: hi boto3"
    deltas = [event["contentBlockDelta"]["delta"]["text"] for event in events if "contentBlockDelta" in event]
    assert "".join(deltas).split() == ["Echo:", "hi", "stream"]
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 3
