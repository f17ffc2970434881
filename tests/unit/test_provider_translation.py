"""Pure translation between paymaster's request and each provider's wire format."""

from paymaster.adapters.providers import bedrock, openai_compatible
from paymaster.domain.chat import ChatRequest, Finished, TextDelta, Usage, UsageReported
from paymaster.domain.policy import Deployment
from paymaster.ports import ProviderCall


def call(body: dict[str, object], limit: int = 256, model: str = "provider-model") -> ProviderCall:
    return ProviderCall(
        request=ChatRequest.model_validate(body),
        deployment=Deployment(provider="p", model=model),
        max_output_tokens=limit,
    )


def test_openai_body_passes_caller_fields_and_sets_model_and_limit() -> None:
    wire = openai_compatible.to_wire(
        call({"model": "virtual", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 999, "seed": 7}),
        stream=False,
    )

    assert wire == {
        "model": "provider-model",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 256,
        "seed": 7,
    }


def test_openai_stream_always_asks_for_usage() -> None:
    wire = openai_compatible.to_wire(
        call({"model": "v", "messages": [{"role": "user", "content": "hi"}], "stream": True}), stream=True
    )

    assert wire["stream"] is True
    assert wire["stream_options"] == {"include_usage": True}


def test_openai_keeps_max_completion_tokens_for_reasoning_models() -> None:
    wire = openai_compatible.to_wire(
        call({"model": "v", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 50}, limit=50),
        stream=False,
    )

    assert wire["max_completion_tokens"] == 50
    assert "max_tokens" not in wire


def test_openai_cached_prompt_tokens_are_counted_apart() -> None:
    usage = openai_compatible.usage_from_wire(
        {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 800}}
    )

    assert usage == Usage(input_tokens=200, output_tokens=10, cache_read_tokens=800)


def test_openai_last_chunks_carry_finish_then_usage() -> None:
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}], "usage": None}
    usage = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}

    assert openai_compatible.chunk_from_wire(finish) == [Finished("length")]
    assert openai_compatible.chunk_from_wire(usage) == [UsageReported(Usage(5, 2))]


def test_bedrock_system_messages_move_to_system_and_turns_alternate() -> None:
    wire = bedrock.to_wire(
        call(
            {
                "model": "v",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "one"},
                    {"role": "user", "content": [{"type": "text", "text": "two"}]},
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": "three"},
                ],
                "temperature": 0.2,
                "top_p": 0.9,
                "stop": "END",
            },
            model="amazon.nova-lite-v1:0",
        )
    )

    assert wire == {
        "modelId": "amazon.nova-lite-v1:0",
        "system": [{"text": "be brief"}],
        "messages": [
            {"role": "user", "content": [{"text": "one"}, {"text": "two"}]},
            {"role": "assistant", "content": [{"text": "ok"}]},
            {"role": "user", "content": [{"text": "three"}]},
        ],
        "inferenceConfig": {"maxTokens": 256, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
    }


def test_bedrock_response_and_stream_events_translate() -> None:
    completion = bedrock.from_wire(
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "a"}, {"text": "b"}]}},
            "stopReason": "max_tokens",
            "usage": {"inputTokens": 9, "outputTokens": 2, "cacheReadInputTokens": 4, "cacheWriteInputTokens": 1},
            "ResponseMetadata": {"RequestId": "req-1"},
        }
    )

    assert (completion.text, completion.finish_reason, completion.provider_request_id) == ("ab", "length", "req-1")
    assert completion.usage == Usage(9, 2, cache_read_tokens=4, cache_write_tokens=1)
    assert list(
        bedrock.events_from_wire(
            [
                {"messageStart": {"role": "assistant"}},
                {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "x"}}},
                {"contentBlockStop": {"contentBlockIndex": 0}},
                {"messageStop": {"stopReason": "end_turn"}},
                {"metadata": {"usage": {"inputTokens": 3, "outputTokens": 1}}},
            ]
        )
    ) == [TextDelta("x"), Finished("stop"), UsageReported(Usage(3, 1))]
