"""Provider faults through the real clients: the openai SDK → the gateway → the fake providers,
which fail as scripted (`paymaster_local.fakes.faults`). Each test checks what the caller saw,
which deployments were called in which order, and what the budget was charged.

The stack here runs the demo policy with short provider timeouts (first byte 1 s), so a slow
provider is a timeout in a second, not a minute.
"""

import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3
import httpx
import openai
import pytest
import yaml
from openai import OpenAI

from paymaster.adapters.policy_file import load_policy
from paymaster.adapters.tokenizer import count_tokens
from paymaster.client import SigV4Auth
from paymaster.domain.chat import ChatRequest, Usage
from paymaster.domain.estimate import input_tokens
from paymaster.domain.limits import actual_cost, max_cost
from paymaster.domain.metering import delivered_output_tokens
from paymaster_local.credentials import session_for
from paymaster_local.stack import LocalStack, free_port, local_stack
from tests.e2e_local.conftest import DEMO_POLICY

SEARCH = "search-ranker"  # gpt-4o-mini → fallback nova-lite; search-monthly budget
SUPPORT = "support-assistant"  # claude-sonnet-4: Anthropic, then Bedrock (priority 1)
GPT = "gpt-4o-mini"
NOVA = "us.amazon.nova-lite-v1:0"
SONNET_DIRECT = "claude-sonnet-4-20250514"
SONNET_BEDROCK = "us.anthropic.claude-sonnet-4-20250514-v1:0"
QUESTION = [{"role": "user", "content": "tell me about the platform team budget"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("faults-stack")
    raw = yaml.safe_load(DEMO_POLICY.read_text())
    for provider in raw["providers"].values():
        provider["timeouts"] = {"connect_s": 1, "first_byte_s": 1, "total_s": 20}
    policy_file = state / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(raw))
    with (
        (state / "gateway.log").open("wb") as log,
        local_stack(policy_file, port=free_port(), state_dir=state, gateway_output=log) as running,
    ):
        yield running


@pytest.fixture
def fakes(stack: LocalStack) -> Iterator["Fakes"]:
    fakes = Fakes(stack.providers_url)
    fakes.reset()
    yield fakes
    fakes.reset()


class Fakes:
    def __init__(self, url: str) -> None:
        self._http = httpx.Client(base_url=url, timeout=10)

    def fail(self, model: str, *faults: dict[str, Any]) -> None:
        self._http.post("/_fake/faults", json={"model": model, "faults": list(faults)}).raise_for_status()

    def calls(self) -> list[tuple[str, str, str | None]]:
        """(api, model, fault kind) of each call the fakes served, in order."""
        calls = self._http.get("/_fake/calls").raise_for_status().json()["calls"]
        return [(call["api"], call["model"], _kind(call["fault"])) for call in calls]

    def reset(self) -> None:
        self._http.delete("/_fake/faults").raise_for_status()


def _kind(fault: dict[str, Any] | None) -> str | None:
    if fault is None:
        return None
    return f"status {fault['status']}" if "status" in fault else next(iter(fault))


def session(stack: LocalStack, profile: str) -> boto3.Session:
    return session_for(stack.credentials, profile)


@pytest.fixture
def client(stack: LocalStack) -> Callable[[str], OpenAI]:
    def make(profile: str) -> OpenAI:
        auth = SigV4Auth(session=session(stack, profile))
        return OpenAI(base_url=stack.url + "/v1", api_key="unused", http_client=httpx.Client(auth=auth), max_retries=0)

    return make


@pytest.fixture
def budget(stack: LocalStack) -> Callable[[str, str], tuple[Decimal, Decimal]]:
    """(used, reserved) in USD of a rule, as `GET /v1/usage` reports it to `profile`."""

    def read(profile: str, rule: str) -> tuple[Decimal, Decimal]:
        with httpx.Client(base_url=stack.url, auth=SigV4Auth(session=session(stack, profile))) as http:
            rules = http.get("/v1/usage").raise_for_status().json()["rules"]
        (found,) = [entry for entry in rules if entry["rule"] == rule]
        return Decimal(found["used"]), Decimal(found["reserved"])

    return read


def test_a_throttled_deployment_falls_back_to_the_next_model(
    client: Callable[[str], OpenAI], fakes: Fakes, budget: Callable[[str, str], tuple[Decimal, Decimal]]
) -> None:
    fakes.fail(GPT, {"status": 429, "retry_after": 2})
    used_before, _ = budget(SEARCH, "search-monthly")

    raw = client(SEARCH).chat.completions.with_raw_response.create(model=GPT, messages=QUESTION, max_tokens=50)
    completion = raw.parse()

    assert completion.choices[0].message.content == "Echo: tell me about the platform team budget"
    assert raw.headers["x-paymaster-deployment"] == f"bedrock-us-east-1/{NOVA}"
    assert raw.headers["x-paymaster-tried"] == f"openai/{GPT}"
    assert fakes.calls() == [("openai", GPT, "status 429"), ("bedrock", NOVA, None)]
    # Charged once, at Nova Lite's price for the usage it reported (echoed in the body).
    nova = load_policy(DEMO_POLICY).models["nova-lite"]
    assert completion.usage is not None
    usage = (completion.usage.prompt_tokens, completion.usage.completion_tokens)
    cost = Decimal(raw.headers["x-paymaster-cost-usd"])
    assert cost == Decimal(int(actual_cost(nova, Usage(*usage)))) / 10**6
    used_after, reserved_after = budget(SEARCH, "search-monthly")
    assert (used_after - used_before, reserved_after) == (cost, 0)


def test_when_every_deployment_fails_the_caller_gets_the_last_error_and_nothing_is_held(
    client: Callable[[str], OpenAI], fakes: Fakes, budget: Callable[[str, str], tuple[Decimal, Decimal]]
) -> None:
    fakes.fail(GPT, {"status": 500})
    fakes.fail(NOVA, {"status": 503})
    before = budget(SEARCH, "search-monthly")

    with pytest.raises(openai.APIStatusError) as raised:
        client(SEARCH).chat.completions.create(model=GPT, messages=QUESTION, max_tokens=50)

    assert raised.value.status_code == 502
    assert fakes.calls() == [("openai", GPT, "status 500"), ("bedrock", NOVA, "status 503")]
    assert budget(SEARCH, "search-monthly") == before


def test_every_deployment_throttled_is_a_429_the_sdk_may_retry(
    client: Callable[[str], OpenAI], fakes: Fakes, budget: Callable[[str, str], tuple[Decimal, Decimal]]
) -> None:
    fakes.fail(SONNET_DIRECT, {"status": 429, "retry_after": 3})
    fakes.fail(SONNET_BEDROCK, {"status": 429})
    before = budget(SUPPORT, "support-monthly")

    with pytest.raises(openai.RateLimitError) as raised:
        client(SUPPORT).chat.completions.create(model="claude-sonnet-4", messages=QUESTION, max_tokens=50)

    assert raised.value.response.headers["x-should-retry"] == "true"
    assert raised.value.code == "provider_rate_limited"
    assert fakes.calls() == [("anthropic", SONNET_DIRECT, "status 429"), ("bedrock", SONNET_BEDROCK, "status 429")]
    assert budget(SUPPORT, "support-monthly") == before


def test_anthropic_overloaded_moves_to_the_bedrock_deployment_of_the_same_model(
    client: Callable[[str], OpenAI], fakes: Fakes
) -> None:
    fakes.fail(SONNET_DIRECT, {"status": 529})

    raw = client(SUPPORT).chat.completions.with_raw_response.create(
        model="claude-sonnet-4", messages=QUESTION, max_tokens=50, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)

    assert text == "Echo: tell me about the platform team budget"
    assert raw.headers["x-paymaster-deployment"] == f"bedrock-us-east-1/{SONNET_BEDROCK}"
    assert fakes.calls() == [("anthropic", SONNET_DIRECT, "status 529"), ("bedrock", SONNET_BEDROCK, None)]


def test_a_stream_without_a_first_byte_in_time_falls_back(client: Callable[[str], OpenAI], fakes: Fakes) -> None:
    fakes.fail(GPT, {"first_byte_delay_s": 2.5})

    raw = client(SEARCH).chat.completions.with_raw_response.create(
        model=GPT, messages=QUESTION, max_tokens=50, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)

    assert text == "Echo: tell me about the platform team budget"
    assert raw.headers["x-paymaster-deployment"] == f"bedrock-us-east-1/{NOVA}"
    assert fakes.calls() == [("openai", GPT, "first_byte_delay_s"), ("bedrock", NOVA, None)]


def test_a_non_streamed_answer_late_past_its_timeout_is_charged_its_hold_not_retried(
    client: Callable[[str], OpenAI], fakes: Fakes, budget: Callable[[str, str], tuple[Decimal, Decimal]]
) -> None:
    """A non-streamed answer's status line comes after generation: the provider may bill an
    answer the gateway stopped waiting for, so it is charged its hold and not sent elsewhere."""
    fakes.fail(GPT, {"first_byte_delay_s": 2.5})
    used_before, _ = budget(SEARCH, "search-monthly")

    with pytest.raises(openai.APIStatusError) as raised:
        client(SEARCH).chat.completions.create(model=GPT, messages=QUESTION, max_tokens=50)

    assert raised.value.status_code == 504
    assert fakes.calls() == [("openai", GPT, "first_byte_delay_s")]
    model = load_policy(DEMO_POLICY).models[GPT]
    request = ChatRequest.model_validate({"model": GPT, "messages": QUESTION, "max_tokens": 50})
    prompt = input_tokens(request, lambda text: count_tokens(text, model.tokenizer), model.input_token_factor)
    used_after, reserved_after = budget(SEARCH, "search-monthly")
    assert (used_after - used_before, reserved_after) == (Decimal(int(max_cost(model, prompt, 50))) / 10**6, 0)
    # ...and the answer says so.
    headers = raised.value.response.headers
    assert (Decimal(headers["x-paymaster-cost-usd"]), headers["x-paymaster-billed-on"]) == (
        used_after - used_before,
        "reservation",
    )


@pytest.mark.parametrize("fault", [{"cut_after": 0}, {"malformed_after": 0}])
def test_a_502_the_provider_may_have_billed_says_what_it_was_charged(
    client: Callable[[str], OpenAI],
    fakes: Fakes,
    budget: Callable[[str, str], tuple[Decimal, Decimal]],
    fault: dict[str, int],
) -> None:
    """An answer that broke off after its 200 was generated, so the provider may bill it: the team
    is charged the hold — the money that used to go unexplained — and the 502 says exactly that."""
    fakes.fail(GPT, fault)
    used_before, _ = budget(SEARCH, "search-monthly")

    with pytest.raises(openai.APIStatusError) as raised:
        client(SEARCH).chat.completions.create(model=GPT, messages=QUESTION, max_tokens=50)

    assert raised.value.status_code == 502
    assert fakes.calls() == [("openai", GPT, next(iter(fault)))]  # accepted: not retried elsewhere
    used_after, reserved_after = budget(SEARCH, "search-monthly")
    headers = raised.value.response.headers
    assert reserved_after == 0
    assert Decimal(headers["x-paymaster-cost-usd"]) == used_after - used_before > 0
    assert headers["x-paymaster-billed-on"] == "reservation"


def test_a_502_no_provider_billed_says_nothing_was_charged(
    client: Callable[[str], OpenAI], fakes: Fakes, budget: Callable[[str, str], tuple[Decimal, Decimal]]
) -> None:
    fakes.fail("gpt-4o", {"status": 500})  # gpt-4o has no fallback
    used_before, _ = budget(SEARCH, "search-monthly")

    with pytest.raises(openai.APIStatusError) as raised:
        client(SEARCH).chat.completions.create(model="gpt-4o", messages=QUESTION, max_tokens=50)

    assert raised.value.status_code == 502
    headers = raised.value.response.headers
    assert (headers["x-paymaster-cost-usd"], headers["x-paymaster-billed-on"]) == ("0", "released")
    assert budget(SEARCH, "search-monthly") == (used_before, 0)


def streamed_raw(stack: LocalStack, profile: str, model: str) -> str:
    """A streamed answer as the bytes arrived, comment lines included."""
    auth = SigV4Auth(session=session(stack, profile))
    body = {"model": model, "messages": QUESTION, "max_tokens": 50, "stream": True}
    with httpx.Client(base_url=stack.url, auth=auth, timeout=30) as http:
        return http.post("/v1/chat/completions", json=body).raise_for_status().text


def trailer(raw: str) -> tuple[Decimal, str]:
    """(cost, basis) from a stream's `: x-paymaster-cost-usd:` / `: x-paymaster-billed-on:` comments."""
    comments = dict(line[2:].split(": ", 1) for line in raw.splitlines() if line.startswith(": x-paymaster-"))
    return Decimal(comments["x-paymaster-cost-usd"]), comments["x-paymaster-billed-on"]


@pytest.mark.parametrize(("fault", "basis"), [(None, "provider_usage"), ({"cut_after": 3}, "delivered_text")])
def test_a_stream_ends_saying_what_it_was_charged_whole_or_cut(
    stack: LocalStack,
    fakes: Fakes,
    budget: Callable[[str, str], tuple[Decimal, Decimal]],
    fault: dict[str, int] | None,
    basis: str,
) -> None:
    if fault:
        fakes.fail(GPT, fault)
    used_before, _ = budget(SEARCH, "search-monthly")

    raw = streamed_raw(stack, SEARCH, GPT)

    used_after, reserved_after = budget(SEARCH, "search-monthly")
    assert reserved_after == 0
    assert trailer(raw) == (used_after - used_before, basis)
    assert ('"error"' in raw) == (fault is not None)


def delivered_charge(model_name: str, words: list[str], max_tokens: int) -> Decimal:
    """What the gateway charges `model_name` for a stream cut after `words`: the input estimate
    plus the delivered text's tokens (× the model's factor), at the reservation's prices."""
    model = load_policy(DEMO_POLICY).models[model_name]
    request = ChatRequest.model_validate({"model": model_name, "messages": QUESTION, "max_tokens": max_tokens})
    prompt = input_tokens(request, lambda text: count_tokens(text, model.tokenizer), model.input_token_factor)
    output = delivered_output_tokens(
        count_tokens("".join(words), model.tokenizer), model.input_token_factor, max_tokens
    )
    return Decimal(int(max_cost(model, prompt, output))) / 10**6


# (app, virtual model, the provider's model id, the app's monthly budget): one per provider kind.
STREAMS = [
    (SEARCH, GPT, GPT, "search-monthly"),
    (SUPPORT, "claude-sonnet-4", SONNET_DIRECT, "support-monthly"),
    (SUPPORT, "claude-haiku", "us.anthropic.claude-3-5-haiku-20241022-v1:0", "support-monthly"),
]


@pytest.mark.parametrize(("profile", "model", "deployed_as", "rule"), STREAMS)
@pytest.mark.parametrize("fault", [{"cut_after": 3}, {"malformed_after": 3}])
def test_a_stream_broken_by_the_provider_is_charged_what_it_delivered(
    client: Callable[[str], OpenAI],
    fakes: Fakes,
    budget: Callable[[str, str], tuple[Decimal, Decimal]],
    fault: dict[str, int],
    profile: str,
    model: str,
    deployed_as: str,
    rule: str,
) -> None:
    fakes.fail(deployed_as, fault)
    used_before, _ = budget(profile, rule)
    words: list[str] = []

    stream = client(profile).chat.completions.create(model=model, messages=QUESTION, max_tokens=50, stream=True)

    def read_all() -> None:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                words.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIError) as raised:
        read_all()

    # The gateway answered with an error event, not a cut of its own.
    assert not isinstance(raised.value, openai.APIConnectionError)
    assert words == ["Echo:", " tell", " me"]
    assert [(model, kind) for _, model, kind in fakes.calls()] == [(deployed_as, next(iter(fault)))]  # not retried
    used_after, reserved_after = budget(profile, rule)
    assert reserved_after == 0
    assert used_after - used_before == delivered_charge(model, words, 50) > 0


def test_a_client_that_leaves_mid_stream_is_charged_what_was_delivered(
    client: Callable[[str], OpenAI], fakes: Fakes, budget: Callable[[str, str], tuple[Decimal, Decimal]]
) -> None:
    fakes.fail(GPT, {"stall_after": 2, "seconds": 0.8})  # a pause, so the client leaves before the end
    used_before, _ = budget(SEARCH, "search-monthly")

    stream = client(SEARCH).chat.completions.create(model=GPT, messages=QUESTION, max_tokens=50, stream=True)
    words = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            words.append(chunk.choices[0].delta.content)
        if len(words) == 2:
            stream.close()
            break

    used_after, reserved_after = _settled(budget, SEARCH, "search-monthly")
    assert reserved_after == 0
    # The gateway may have received the pieces in flight when the client left: at least what the
    # client saw, at most the whole answer, never the whole reservation and never $0.
    assert delivered_charge(GPT, words, 50) <= used_after - used_before <= delivered_charge(GPT, WHOLE_ANSWER, 50)


WHOLE_ANSWER = ["Echo:", " tell", " me", " about", " the", " platform", " team", " budget"]


def _settled(budget: Callable[[str, str], tuple[Decimal, Decimal]], profile: str, rule: str) -> tuple[Decimal, Decimal]:
    """The rule once no hold is left: a stream the client left settles when the gateway notices."""
    deadline = time.monotonic() + 10
    while True:
        used, reserved = budget(profile, rule)
        if reserved == 0 or time.monotonic() > deadline:
            return used, reserved
        time.sleep(0.1)


def test_stream_usage_is_the_billed_usage_and_the_extra_chunk_is_kept_only_when_asked(
    client: Callable[[str], OpenAI], fakes: Fakes
) -> None:
    with_usage = list(
        client(SEARCH).chat.completions.create(
            model=GPT, messages=QUESTION, max_tokens=50, stream=True, stream_options={"include_usage": True}
        )
    )
    without = list(client(SEARCH).chat.completions.create(model=GPT, messages=QUESTION, max_tokens=50, stream=True))

    assert with_usage[-1].choices == []
    assert with_usage[-1].usage is not None
    assert with_usage[-1].usage.completion_tokens == len(WHOLE_ANSWER)
    assert all(chunk.usage is None for chunk in without)
    # The provider was asked for usage both times: a stream is always metered to the token.
    assert fakes.calls() == [("openai", GPT, None), ("openai", GPT, None)]


def test_embeddings_through_every_provider_kind_that_has_them(
    client: Callable[[str], OpenAI], fakes: Fakes, budget: Callable[[str, str], tuple[Decimal, Decimal]]
) -> None:
    cases = [(SEARCH, "text-embedding-3-small"), (SEARCH, "titan-embed-v2"), (SUPPORT, "cohere-embed-english")]
    for profile, model in cases:
        used_before, _ = budget(profile, "per-user-daily-tokens")
        raw = client(profile).embeddings.with_raw_response.create(model=model, input=["first text", "second one here"])
        answer = raw.parse()  # the SDK asked for base64 and decoded it

        assert [item.index for item in answer.data] == [0, 1]
        assert all(len(item.embedding) > 0 for item in answer.data)
        assert answer.usage.prompt_tokens == 5  # the fakes count words
        assert raw.headers["x-paymaster-billed-on"] == "provider_usage"
        used_after, reserved_after = budget(profile, "per-user-daily-tokens")
        assert (used_after - used_before, reserved_after) == (5, 0)
    # Titan embeds one text per call: two calls for two inputs.
    assert [(api, model) for api, model, _ in fakes.calls()] == [
        ("openai", "text-embedding-3-small"),
        ("bedrock", "amazon.titan-embed-text-v2:0"),
        ("bedrock", "amazon.titan-embed-text-v2:0"),
        ("bedrock", "cohere.embed-english-v3"),
    ]


def test_token_ids_for_a_bedrock_embeddings_model_are_refused_before_anything_is_held(
    client: Callable[[str], OpenAI], fakes: Fakes, budget: Callable[[str, str], tuple[Decimal, Decimal]]
) -> None:
    before = budget(SEARCH, "per-user-daily-tokens")

    with pytest.raises(openai.BadRequestError, match="token ids"):
        client(SEARCH).embeddings.create(model="titan-embed-v2", input=[[1, 2, 3]])

    assert fakes.calls() == []
    assert budget(SEARCH, "per-user-daily-tokens") == before


def test_an_embeddings_model_is_not_a_chat_model(client: Callable[[str], OpenAI]) -> None:
    with pytest.raises(openai.BadRequestError, match="embeddings model"):
        client(SEARCH).chat.completions.create(model="text-embedding-3-small", messages=QUESTION)


TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_budget",
            "description": "The remaining budget of a team",
            "parameters": {"type": "object", "properties": {"team": {"type": "string"}}, "required": ["team"]},
        },
    }
]


@pytest.mark.parametrize(("profile", "model"), [(SEARCH, GPT), (SUPPORT, "claude-haiku"), (SUPPORT, "claude-sonnet-4")])
@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_round_trip_through_every_provider_kind(
    client: Callable[[str], OpenAI], profile: str, model: str, stream: bool
) -> None:
    asked: list[Any] = [{"role": "user", "content": 'call get_budget {"team": "search"}'}]
    if stream:
        calls: dict[int, dict[str, str]] = {}
        finish = None
        for chunk in client(profile).chat.completions.create(model=model, messages=asked, tools=TOOLS, stream=True):
            for piece in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += piece.id or ""
                call["name"] += (piece.function.name or "") if piece.function else ""
                call["arguments"] += (piece.function.arguments or "") if piece.function else ""
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
        (call,) = calls.values()
    else:
        completion = client(profile).chat.completions.create(model=model, messages=asked, tools=TOOLS)
        (tool_call,) = completion.choices[0].message.tool_calls or []
        assert tool_call.type == "function"
        call = {"id": tool_call.id, "name": tool_call.function.name, "arguments": tool_call.function.arguments}
        finish = completion.choices[0].finish_reason

    assert finish == "tool_calls"
    assert call["name"] == "get_budget"
    assert json.loads(call["arguments"]) == {"team": "search"}
    # The tool's answer goes back; the model (the fake) echoes it.
    answer = client(profile).chat.completions.create(
        model=model,
        tools=TOOLS,
        messages=[
            *asked,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": "get_budget", "arguments": call["arguments"]},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call["id"], "content": "1200 USD left"},
        ],
    )
    assert answer.choices[0].message.content == "Echo: 1200 USD left"


def test_weighted_deployments_share_the_traffic(client: Callable[[str], OpenAI]) -> None:
    """claude-haiku: us-east-1 weight 3, us-west-2 weight 1; 40 requests reach both."""
    served = {
        client(SUPPORT)
        .chat.completions.with_raw_response.create(model="claude-haiku", messages=QUESTION, max_tokens=5)
        .headers["x-paymaster-deployment"]
        .split("/")[0]
        for _ in range(40)
    }
    assert served == {"bedrock-us-east-1", "bedrock-us-west-2"}
