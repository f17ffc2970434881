"""A streamed answer closes the provider stream (and so settles it) however the response ends."""

import gc
from collections.abc import Generator
from typing import Any

import anyio
import pytest
from starlette.requests import ClientDisconnect

from paymaster.api.app import SettlingStream
from paymaster.domain.chat import StreamEvent, TextDelta
from paymaster.domain.metering import Bill


class Flags:
    def __init__(self) -> None:
        self.events_closed = False


def pair(flags: Flags) -> tuple[Generator[bytes, None, None], Generator[StreamEvent | Bill, None, None]]:
    def events() -> Generator[StreamEvent | Bill, None, None]:
        try:
            yield TextDelta("one")
            yield TextDelta("two")
        finally:
            flags.events_closed = True  # where ChatService.stream settles

    source = events()
    next(source)  # open_stream pulled the first event before the response existed

    def lines() -> Generator[bytes, None, None]:
        try:
            for event in source:
                yield f"data: {event}\n\n".encode()
        finally:
            source.close()

    return lines(), source


@pytest.mark.parametrize("spec", ["2.3", "2.4"])  # Starlette cancels the body (2.3) or raises ClientDisconnect
@pytest.mark.parametrize("fails_at", ["start", "first body"])
def test_a_client_gone_closes_the_provider_stream_before_the_response_returns(fails_at: str, spec: str) -> None:
    flags = Flags()
    lines, events = pair(flags)
    response = SettlingStream(lines, events, media_type="text/event-stream")

    async def receive() -> dict[str, Any]:
        await anyio.sleep(10)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and fails_at == "start":
            raise OSError("client gone")
        if message["type"] == "http.response.body" and fails_at == "first body":
            raise OSError("client gone")

    gc.disable()  # no rescue by the collector: the response itself must close the stream
    try:
        with pytest.raises((OSError, ClientDisconnect)):
            anyio.run(response, {"type": "http", "asgi": {"spec_version": spec}}, receive, send)
        assert flags.events_closed
    finally:
        gc.enable()
