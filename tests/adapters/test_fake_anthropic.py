"""The fake Anthropic Messages API over a socket, read with httpx as Anthropic's wire format."""

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from paymaster_local.fakes import create_fake_providers_app, serve_in_thread

MODEL = "claude-sonnet-4-20250514"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CALL_WEATHER = [{"role": "user", "content": 'call get_weather {"city":"Paris"}'}]
TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with (
        serve_in_thread(create_fake_providers_app(chunk_delay_s=0)) as url,
        httpx.Client(base_url=url, headers={"x-api-key": "sk-ant-test"}) as client,
    ):
        yield client


def messages(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/v1/messages", json={"model": MODEL, "max_tokens": 64, **body})


def events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event type, data) of each SSE event; the data's own ``type`` must name the event."""
    parsed = []
    for event in response.text.split("\n\n")[:-1]:
        event_line, data_line = event.split("\n")
        name, data = event_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        parsed.append((name, data))
    return parsed


def test_message_echoes_the_last_user_message_with_usage_and_a_request_id(http: httpx.Client) -> None:
    response = messages(http, system="be brief", messages=[{"role": "user", "content": "tell me a joke"}])

    body = response.json()
    assert response.headers["request-id"].startswith("req_")
    assert body["content"] == [{"type": "text", "text": "Echo: tell me a joke"}]
    assert body["stop_reason"] == "end_turn"
    # (2 + 3) for the system text + (4 + 3) for the message.
    assert (body["usage"]["input_tokens"], body["usage"]["output_tokens"]) == (12, 5)


def test_stream_is_anthropics_event_sequence(http: httpx.Client) -> None:
    response = messages(http, messages=[{"role": "user", "content": "hi there"}], stream=True)

    sequence = events(response)
    assert [name for name, _ in sequence] == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert sequence[1][1]["content_block"] == {"type": "text", "text": ""}
    assert [data["delta"] for _, data in sequence[2:5]] == [
        {"type": "text_delta", "text": text} for text in ("Echo:", " hi", " there")
    ]
    assert sequence[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_message_calls_the_tool_the_user_asks_for(http: httpx.Client) -> None:
    response = messages(http, messages=CALL_WEATHER, tools=[WEATHER_TOOL])

    body = response.json()
    (block,) = body["content"]
    assert block == {"type": "tool_use", "id": block["id"], "name": "get_weather", "input": {"city": "Paris"}}
    assert block["id"].startswith("toolu_")
    assert body["stop_reason"] == "tool_use"
    # (3 + 3) prompt tokens; '{"city": "Paris"}' is 2 words, plus 1 for the name.
    assert (body["usage"]["input_tokens"], body["usage"]["output_tokens"]) == (6, 3)


def test_streamed_tool_call_starts_a_tool_use_block_and_sends_its_input_json_in_pieces(http: httpx.Client) -> None:
    response = messages(http, messages=CALL_WEATHER, tools=[WEATHER_TOOL], stream=True)

    sequence = events(response)
    start = sequence[1][1]["content_block"]
    assert [name for name, _ in sequence] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert start == {"type": "tool_use", "id": start["id"], "name": "get_weather", "input": {}}
    assert [data["delta"] for _, data in sequence[2:4]] == [
        {"type": "input_json_delta", "partial_json": '{"city":'},
        {"type": "input_json_delta", "partial_json": ' "Paris"}'},
    ]
    assert json.loads("".join(data["delta"]["partial_json"] for _, data in sequence[2:4])) == {"city": "Paris"}
    assert sequence[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert sequence[-2][1]["usage"]["output_tokens"] == 3


def test_a_tool_result_is_echoed_and_the_call_and_result_count_as_prompt(http: httpx.Client) -> None:
    conversation = [
        *CALL_WEATHER,
        {"role": "assistant", "content": [{"type": "text", "text": "checking"}, TOOL_USE]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "21 C"}]}
            ],
        },
    ]

    body = messages(http, messages=conversation, tools=[WEATHER_TOOL]).json()

    assert body["content"] == [{"type": "text", "text": "Echo: 21 C"}]
    assert body["stop_reason"] == "end_turn"
    # user (3 + 3), assistant "checking" + get_weather {"city": "Paris"} (4 + 3), result (2 + 3)
    assert body["usage"]["input_tokens"] == 18


def test_a_tool_result_given_as_a_string_is_echoed(http: httpx.Client) -> None:
    conversation = [
        *CALL_WEATHER,
        {"role": "assistant", "content": [TOOL_USE]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
    ]

    body = messages(http, messages=conversation, tools=[WEATHER_TOOL]).json()

    assert body["content"] == [{"type": "text", "text": "Echo: sunny"}]


@pytest.mark.parametrize(
    ("conversation", "tools", "message"),
    [
        pytest.param(
            [*CALL_WEATHER, {"role": "assistant", "content": [TOOL_USE]}, {"role": "user", "content": "and?"}],
            [WEATHER_TOOL],
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1",
            id="a call without a result",
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]}],
            [WEATHER_TOOL],
            "messages.0.content: unexpected `tool_use_id` found in `tool_result` blocks: toolu_9",
            id="a result without a call",
        ),
        pytest.param(
            [*CALL_WEATHER, {"role": "assistant", "content": [TOOL_USE]}],
            [],
            "Requests which include `tool_use` or `tool_result` blocks must define tools.",
            id="tool blocks without tools",
        ),
        pytest.param(CALL_WEATHER, [{"description": "no name"}], "tools.0.name: Field required", id="a nameless tool"),
    ],
)
def test_tool_blocks_are_checked_as_anthropic_checks_them(
    http: httpx.Client, conversation: list[dict[str, Any]], tools: list[dict[str, Any]], message: str
) -> None:
    response = messages(http, messages=conversation, **({"tools": tools} if tools else {}))

    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"type", "message"}
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(message)


def test_text_asking_for_an_undefined_tool_is_echoed(http: httpx.Client) -> None:
    body = messages(http, messages=[{"role": "user", "content": 'call get_time {"zone": "CET"}'}], tools=[WEATHER_TOOL])

    assert body.json()["content"] == [{"type": "text", "text": 'Echo: call get_time {"zone": "CET"}'}]


def test_an_app_given_a_key_accepts_only_that_x_api_key() -> None:
    body = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    with serve_in_thread(create_fake_providers_app(chunk_delay_s=0, api_key="sk-ant-right")) as url:
        wrong = httpx.post(url + "/v1/messages", headers={"x-api-key": "sk-ant-wrong"}, json=body)
        right = httpx.post(url + "/v1/messages", headers={"x-api-key": "sk-ant-right"}, json=body)

    assert wrong.status_code == 401
    assert wrong.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    assert right.status_code == 200
