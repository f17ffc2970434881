"""Scripted faults for the fake providers, and the log of the calls they served.

A test queues faults for a model, drives the gateway, then reads which calls reached the fakes:

    POST   /_fake/faults  {"model": "gpt-4o-mini", "faults": [{"status": 429, "retry_after": 2}, {"cut_after": 3}]}
                          → 200 {"model": "gpt-4o-mini", "queued": 2}   (faults now queued for the model)
                          → 400 {"error": "faults[1]: cut_after: Input should be greater than or equal to 0"}
    DELETE /_fake/faults  → 204, every queue and the call log emptied
    GET    /_fake/calls   → 200 {"calls": [{"api": "openai", "operation": "chat_stream", "model": "gpt-4o-mini",
                                            "fault": {"status": 429, "retry_after": 2}, "max_tokens": 64}, ...]}

The model is the provider's model id as the fake receives it: the body's ``model`` (OpenAI,
Anthropic) or the path's model id, percent-decoded (Bedrock). Every request a fake accepts — one
it would answer 200: authenticated and valid — takes the next fault queued for its model and is
logged with it, in arrival order; with no fault left it is answered normally. Requests the fake
refuses (401, 400) take nothing and are not logged. ``api`` is openai, anthropic or bedrock;
``operation`` chat, chat_stream, embeddings (OpenAI), converse, converse_stream or invoke
(Bedrock); ``max_tokens`` the output limit the request set, null when none (always for embeddings).

A fault is a JSON object of exactly one of these shapes:

    {"status": 429, "retry_after": 2}   answer that status (400–599) in the provider's error shape,
                                        with its request id header; retry_after (whole seconds,
                                        optional) becomes a retry-after header
    {"first_byte_delay_s": 1.5}         wait before sending the status line, then answer normally
    {"cut_after": 3}                    after 3 deltas drop the connection: no end events, no usage
    {"malformed_after": 2}              after 2 deltas send one frame the client cannot parse
                                        (``data: {not json``; for Bedrock a frame whose message CRC
                                        is wrong), then end the body
    {"stall_after": 2, "seconds": 5}    after 2 deltas pause 5 s, then go on normally

Deltas are a stream's text pieces (or a tool call's argument fragments), counted after its start
events; with fewer deltas than the fault names, it strikes after the last one, before the end
events. Example: "Echo: tell me a joke" streamed by OpenAI with ``{"cut_after": 3}`` sends the
role chunk, "Echo:", " tell", " me" — then the connection closes: no finish chunk, no usage, no
``[DONE]``.

A non-stream answer is played as one delta, the first half of its JSON body: a cut declares the
whole body's Content-Length, sends the first half and closes; a stall sends the first half,
pauses, then the rest; malformed ends the body (200, complete) after its first half.

How a cut is made: the response sends its parts with ``more_body: True`` and returns without the
final part. uvicorn (h11) then logs "ASGI callable returned without completing response." and
closes the transport, so the client reads a body that ends early — httpx raises
``RemoteProtocolError`` ("peer closed connection without sending complete message body:
incomplete chunked read", or "received 21 bytes, expected 43" with a Content-Length). Raising from
the app once the response has started closes the transport the same way, but uvicorn logs
"Exception in ASGI application" with the whole traceback.
"""

import asyncio
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Send

from paymaster_local.fakes.script import paced

FAULTS_PATH: Final = "/_fake/faults"
CALLS_PATH: Final = "/_fake/calls"

Api = Literal["openai", "anthropic", "bedrock"]
Operation = Literal["chat", "chat_stream", "embeddings", "converse", "converse_stream", "invoke"]


class _FaultShape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StatusFault(_FaultShape):
    """Answer ``status`` in the provider's error shape instead of the reply."""

    status: int = Field(ge=400, le=599)
    retry_after: int | None = Field(default=None, ge=0)

    def retry_headers(self) -> dict[str, str]:
        """``{"retry-after": "2"}`` when the fault says so, else nothing."""
        return {} if self.retry_after is None else {"retry-after": str(self.retry_after)}


class FirstByteDelay(_FaultShape):
    """Wait ``first_byte_delay_s`` before the status line, then answer normally."""

    first_byte_delay_s: float = Field(ge=0)


class CutAfter(_FaultShape):
    """Drop the connection after ``cut_after`` deltas."""

    cut_after: int = Field(ge=0)


class MalformedAfter(_FaultShape):
    """Send a frame the client cannot parse after ``malformed_after`` deltas, then end the body."""

    malformed_after: int = Field(ge=0)


class StallAfter(_FaultShape):
    """Pause ``seconds`` after ``stall_after`` deltas, then go on."""

    stall_after: int = Field(ge=0)
    seconds: float = Field(ge=0)


Fault = StatusFault | FirstByteDelay | CutAfter | MalformedAfter | StallAfter

_SHAPES: Final[dict[str, Callable[[Any], Fault]]] = {
    "status": StatusFault.model_validate,
    "first_byte_delay_s": FirstByteDelay.model_validate,
    "cut_after": CutAfter.model_validate,
    "malformed_after": MalformedAfter.model_validate,
    "stall_after": StallAfter.model_validate,
}


class InvalidFaultError(ValueError):
    """A fault, or a request to queue faults, that does not have one of the documented shapes."""


def parse_fault(value: object) -> Fault:
    """The fault ``value`` describes, told apart by its key: ``{"cut_after": 3}`` → CutAfter(cut_after=3).

    Raises InvalidFaultError for anything else, e.g. ``{"cut_after": 3, "seconds": 1}`` (an extra
    key), ``{"status": 200}`` (not an error) or ``{"cut_after": true}`` (not an integer).
    """
    if not isinstance(value, dict):
        raise InvalidFaultError("a fault is a JSON object")
    shapes = [key for key in _SHAPES if key in value]
    if len(shapes) != 1:
        raise InvalidFaultError(f"a fault has exactly one of the keys {', '.join(_SHAPES)}; got {sorted(value)}")
    try:
        return _SHAPES[shapes[0]](value)
    except ValidationError as error:
        problems = (f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}" for problem in error.errors())
        raise InvalidFaultError("; ".join(problems)) from None


def _parse_fault_request(body: object) -> tuple[str, list[Fault]]:
    """The model and faults of a ``POST /_fake/faults`` body; InvalidFaultError names the bad part."""
    if not isinstance(body, dict) or set(body) != {"model", "faults"}:
        raise InvalidFaultError('the body is {"model": "<model id>", "faults": [<fault>, ...]}')
    model, faults = body["model"], body["faults"]
    if not isinstance(model, str) or not model:
        raise InvalidFaultError("model: a non-empty string")
    if not isinstance(faults, list):
        raise InvalidFaultError("faults: a list of faults")
    parsed = []
    for index, fault in enumerate(faults):
        try:
            parsed.append(parse_fault(fault))
        except InvalidFaultError as error:
            raise InvalidFaultError(f"faults[{index}]: {error}") from None
    return model, parsed


@dataclass(frozen=True)
class Call:
    """One request a fake accepted, with the fault it took (None: answered normally)."""

    api: Api
    operation: Operation
    model: str
    max_tokens: int | None
    fault: Fault | None

    def to_json(self) -> dict[str, object]:
        return {
            "api": self.api,
            "operation": self.operation,
            "model": self.model,
            "fault": None if self.fault is None else self.fault.model_dump(exclude_none=True),
            "max_tokens": self.max_tokens,
        }


class FaultStore:
    """Fault queues by model and the log of accepted calls, for one app; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = {}
        self._calls: list[Call] = []

    def queue(self, model: str, faults: Iterable[Fault]) -> int:
        """Append ``faults`` to ``model``'s queue; how many are now queued for it."""
        with self._lock:
            queue = self._queues.setdefault(model, deque())
            queue.extend(faults)
            return len(queue)

    def take(self, api: Api, operation: Operation, model: str, max_tokens: int | None) -> Fault | None:
        """The next fault for ``model`` (None when there is none); logs the call with it."""
        with self._lock:
            queue = self._queues.get(model)
            fault = queue.popleft() if queue else None
            self._calls.append(Call(api=api, operation=operation, model=model, max_tokens=max_tokens, fault=fault))
            return fault

    def calls(self) -> tuple[Call, ...]:
        with self._lock:
            return tuple(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
            self._calls.clear()


def fault_routes(store: FaultStore) -> list[BaseRoute]:
    """The control API over ``store``, for mounting next to the fakes."""

    async def queue_faults(request: Request) -> Response:
        try:
            model, faults = _parse_fault_request(json.loads(await request.body()))
        except ValueError as error:  # InvalidFaultError, or not JSON
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"model": model, "queued": store.queue(model, faults)})

    async def clear_faults(request: Request) -> Response:
        store.clear()
        return Response(status_code=204)

    async def calls(request: Request) -> Response:
        return JSONResponse({"calls": [call.to_json() for call in store.calls()]})

    return [
        Route(FAULTS_PATH, queue_faults, methods=["POST"]),
        Route(FAULTS_PATH, clear_faults, methods=["DELETE"]),
        Route(CALLS_PATH, calls, methods=["GET"]),
    ]


async def delay_first_byte(fault: Fault | None) -> None:
    """Sleep as long as a FirstByteDelay says; call it before building the response."""
    if isinstance(fault, FirstByteDelay):
        await asyncio.sleep(fault.first_byte_delay_s)


@dataclass(frozen=True)
class StreamScript:
    """A stream's frames in one wire format: ``head`` (start events) at once, ``deltas`` paced,
    then ``tail()`` (end events, built when reached so that they can report the time taken);
    ``malformed`` is the frame a client cannot parse, sent for MalformedAfter."""

    head: tuple[bytes, ...]
    deltas: tuple[bytes, ...]
    tail: Callable[[], tuple[bytes, ...]]
    malformed: bytes


def stream_response(
    script: StreamScript, fault: Fault | None, chunk_delay_s: float, *, media_type: str, headers: Mapping[str, str]
) -> Response:
    """``script`` played with ``fault``: deltas ``chunk_delay_s`` apart, the fault after its deltas."""
    return _PlayedResponse(
        _play(script, fault, chunk_delay_s),
        complete=not isinstance(fault, CutAfter),
        media_type=media_type,
        headers=headers,
    )


def json_response(content: object, fault: Fault | None, *, headers: Mapping[str, str]) -> Response:
    """``content`` as JSON, 200, played with ``fault`` as a one-delta stream (see the module doc)."""
    body = bytes(JSONResponse(content).body)
    first_half, second_half = body[: len(body) // 2], body[len(body) // 2 :]
    if isinstance(fault, MalformedAfter):
        return Response(first_half, media_type="application/json", headers=headers)
    if isinstance(fault, CutAfter | StallAfter):
        script = StreamScript(head=(), deltas=(first_half,), tail=lambda: (second_half,), malformed=b"")
        return _PlayedResponse(
            _play(script, fault, chunk_delay_s=0),
            complete=not isinstance(fault, CutAfter),
            media_type="application/json",
            headers={**headers, "content-length": str(len(body))},
        )
    return Response(body, media_type="application/json", headers=headers)


def _strike_point(fault: Fault | None, deltas: int) -> int:
    """How many deltas go out before ``fault`` strikes: all of them for a fault of another kind."""
    match fault:
        case CutAfter(cut_after=after) | MalformedAfter(malformed_after=after) | StallAfter(stall_after=after):
            return min(after, deltas)
    return deltas


async def _play(script: StreamScript, fault: Fault | None, chunk_delay_s: float) -> AsyncIterator[bytes]:
    strike = _strike_point(fault, len(script.deltas))
    played, rest = script.deltas[:strike], script.deltas[strike:]
    for frame in script.head:
        yield frame
    async for frame in paced(played, chunk_delay_s):
        yield frame
    if isinstance(fault, CutAfter):
        return
    if isinstance(fault, MalformedAfter):
        yield script.malformed
        return
    if isinstance(fault, StallAfter):
        await asyncio.sleep(fault.seconds)
    if played and rest:
        await asyncio.sleep(chunk_delay_s)
    async for frame in paced(rest, chunk_delay_s):
        yield frame
    for frame in script.tail():
        yield frame


class _PlayedResponse(StreamingResponse):
    """A streamed body that, unless ``complete``, stops without its final part, so that the server
    closes the connection mid-body (see the module doc)."""

    def __init__(
        self, frames: AsyncIterator[bytes], *, complete: bool, media_type: str, headers: Mapping[str, str]
    ) -> None:
        super().__init__(frames, media_type=media_type, headers=headers)
        self._frames = frames
        self._complete = complete

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for frame in self._frames:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        if self._complete:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
