"""The prompt audit record as the domain builds it: the policy's opt-in, what it keeps, the cut."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from paymaster.domain.audit import Output, PromptRecord, cut_utf8, prompt_record, shares, streamed_output
from paymaster.domain.chat import ChatRequest, TextDelta, ToolCall, ToolCallDelta
from paymaster.domain.embeddings import EmbeddingRequest
from paymaster.domain.identity import Caller
from paymaster.domain.policy import MAX_AUDIT_BYTES, Audit
from tests.policies import policy_with

NOW = datetime(2026, 11, 29, 18, 25, 7, 123000, tzinfo=UTC)
CALLER = Caller("search", "ranker", "prod", "search-ranker", "arn:aws:sts::111111111111:assumed-role/ranker/i-1")
ON = Audit(prompts=True, max_bytes=1024, retention_days=7)
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def chat(content: str, **fields: object) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **fields}
    )


def record(request: ChatRequest | EmbeddingRequest, output: Output | None, audit: Audit = ON) -> PromptRecord:
    return prompt_record(
        request_id="r1",
        hop=0,
        admitted_at=NOW,
        caller=CALLER,
        model="gpt-4o-mini",
        deployment="openai/gpt-4o-mini",
        request=request,
        output=output,
        audit=audit,
    )


# The policy: off unless the team opts in, bounded so the record fits where it is written.


def test_a_team_keeps_no_prompts_unless_its_policy_opts_in() -> None:
    policy = policy_with([], audit={"support": {"prompts": True}})

    assert policy.teams["search"].audit.prompts is False
    assert policy.teams["support"].audit == Audit(prompts=True, max_bytes=32_768, retention_days=30)


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"prompts": True, "max_bytes": 1023}, "max_bytes"),
        ({"prompts": True, "max_bytes": MAX_AUDIT_BYTES + 1}, "max_bytes"),
        ({"prompts": True, "retention_days": 0}, "retention_days"),
        ({"prompts": True, "retention_days": 401}, "retention_days"),
        ({"prompt": True}, "prompt"),
    ],
)
def test_an_audit_block_out_of_bounds_or_misspelt_is_refused(block: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        policy_with([], audit={"search": block})


# What a record keeps.


def test_a_chat_record_keeps_the_messages_and_tools_as_sent_and_the_answer_as_delivered() -> None:
    request = ChatRequest.model_validate(
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
            "tools": [TOOL],
            "user": "u-7",
            "temperature": 0.2,
        }
    )
    output = Output("Paris.", (ToolCall("call_1", "lookup", '{"q":"France"}'),))

    kept = record(request, output)

    assert json.loads(kept.prompt) == {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
        "tools": [TOOL],
    }
    assert kept.completion is not None
    assert json.loads(kept.completion) == {
        "content": "Paris.",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"France"}'}}
        ],
    }
    assert (kept.team, kept.app, kept.env, kept.principal, kept.user) == (
        "search", "ranker", "prod", CALLER.arn, "u-7",
    )  # fmt: skip
    assert kept.truncated is False
    assert kept.prompt_bytes == len(kept.prompt.encode())
    assert kept.expires_at == NOW + timedelta(days=7)


def test_an_embedding_record_keeps_the_inputs_and_no_completion() -> None:
    request = EmbeddingRequest.model_validate({"model": "text-embedding-3-small", "input": ["née", "naïve"]})

    kept = record(request, None)

    assert json.loads(kept.prompt) == {"input": ["née", "naïve"]}
    assert (kept.completion, kept.completion_bytes) == (None, 0)


def test_a_hold_that_served_nothing_keeps_the_prompt_without_a_completion() -> None:
    kept = record(chat("hello"), None)

    assert kept.completion is None


def test_a_stream_s_pieces_become_its_text_and_its_tool_calls() -> None:
    pieces = [
        TextDelta("Par"),
        ToolCallDelta(0, "c1", "lookup", '{"q"'),
        TextDelta("is"),
        ToolCallDelta(1, "c2", "weather", "{}"),
        ToolCallDelta(0, None, None, ": 1}"),
    ]

    assert streamed_output(pieces) == Output(
        "Paris", (ToolCall("c1", "lookup", '{"q": 1}'), ToolCall("c2", "weather", "{}"))
    )


# The cut: at most max_bytes together, on a character boundary, sizes kept.


def test_a_record_past_the_cap_is_cut_on_a_character_boundary_and_says_so() -> None:
    prompt_text = "é" * 3000  # 2 bytes each
    output = Output("ü" * 100)

    kept = record(chat(prompt_text), output)

    assert kept.completion is not None
    prompt, completion = kept.prompt.encode(), kept.completion.encode()
    assert kept.truncated is True
    assert len(prompt) + len(completion) <= ON.max_bytes
    assert completion == json.dumps({"content": "ü" * 100}, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(prompt) >= ON.max_bytes - len(completion) - 1  # at most the half of an é given up
    assert kept.prompt_bytes == len(
        json.dumps(
            {"messages": [{"role": "user", "content": prompt_text}]}, ensure_ascii=False, separators=(",", ":")
        ).encode()
    )
    assert kept.prompt.startswith('{"messages":[{"role":"user","content":"éé')


def test_a_four_byte_character_at_the_cut_is_left_out_whole() -> None:
    data = "ab😀".encode()  # 2 + 4 bytes

    assert [cut_utf8(data, limit) for limit in range(7)] == [b"", b"a", b"ab", b"ab", b"ab", b"ab", data]


def test_a_lone_surrogate_is_kept_as_a_question_mark_so_the_record_is_valid_utf8() -> None:
    kept = record(chat("bad \ud800 half"), Output("ok"))

    assert "bad ? half" in kept.prompt
    kept.prompt.encode()


@pytest.mark.parametrize(
    ("prompt", "completion", "kept"),
    [
        (300, 500, (300, 500)),
        (2000, 100, (900, 100)),
        (200, 3000, (200, 800)),
        (2000, 3000, (500, 500)),
        (2001, 0, (1000, 0)),
        (1000, 1, (999, 1)),
    ],
)
def test_each_part_may_have_half_and_what_one_leaves_the_other_may_use(
    prompt: int, completion: int, kept: tuple[int, int]
) -> None:
    assert shares(prompt, completion, 1000) == kept


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(1024, MAX_AUDIT_BYTES))
def test_shares_never_pass_the_cap_nor_what_each_part_has_and_waste_nothing(
    prompt: int, completion: int, cap: int
) -> None:
    kept_prompt, kept_completion = shares(prompt, completion, cap)

    assert kept_prompt <= prompt
    assert kept_completion <= completion
    assert kept_prompt + kept_completion == min(cap, prompt + completion)


@given(st.text(), st.integers(0, 200))
def test_a_cut_is_the_longest_prefix_of_whole_characters_that_fits(text: str, limit: int) -> None:
    data = text.encode("utf-8", "replace")

    kept = cut_utf8(data, limit)

    assert len(kept) <= limit
    assert data.startswith(kept)
    kept.decode()  # whole characters only
    assert len(kept) > limit - 4 or kept == data  # a UTF-8 character is at most 4 bytes
