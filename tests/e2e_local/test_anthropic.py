"""A model served by Anthropic's Messages API answers the OpenAI SDK through the gateway."""

from collections.abc import Callable

from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

SUPPORT = "support-assistant"  # team support: claude-sonnet-4 on the fake Anthropic API
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello anthropic"},
]
# The fake counts words plus 3 per message: (2 + 3) for the system text + (2 + 3) for the question.
PROMPT_TOKENS = 10


def test_anthropic_deployment_answers_with_the_echo_and_its_usage(openai_for: Callable[[str], OpenAI]) -> None:
    raw = openai_for(SUPPORT).chat.completions.with_raw_response.create(model="claude-sonnet-4", messages=MESSAGES)
    completion = raw.parse()

    assert raw.headers["x-paymaster-deployment"] == "anthropic/claude-sonnet-4-20250514"
    assert completion.choices[0].message.content == "Echo: hello anthropic"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (PROMPT_TOKENS, 3)


def test_anthropic_stream_arrives_as_chunks_with_usage_when_asked(openai_for: Callable[[str], OpenAI]) -> None:
    stream = openai_for(SUPPORT).chat.completions.create(
        model="claude-sonnet-4",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    deltas: list[str] = []
    finish = None
    usage = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            deltas.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
        if chunk.usage is not None:
            usage = chunk.usage

    assert deltas == ["Echo:", " hello", " anthropic"]
    assert finish == "stop"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, 3)
