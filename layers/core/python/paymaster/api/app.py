"""The gateway's routes. Each parses the request, calls one use case and maps the result.

POST /v1/chat/completions   OpenAI body; `stream: true` answers with SSE
POST /v1/embeddings         OpenAI body; floats or base64, as the caller asks
GET  /v1/models             the virtual models the caller's team may use
GET  /v1/usage              the caller's team: every rule's limit, used, reserved, remaining, reset;
                            its spend this month and last (`?month=YYYY-MM&by=app|model|user`)
GET  /healthz               readiness for Lambda Web Adapter (unauthenticated, no data)
"""

import asyncio
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from itertools import chain
from typing import Any, TypeVar

import anyio
from aws_lambda_powertools import Logger
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from paymaster import names
from paymaster.adapters.request_context import request_id as gateway_request_id
from paymaster.api import embeddings_wire, openai_wire, usage_wire
from paymaster.api.errors import bill_headers, error_body, error_response, status_and_type
from paymaster.domain.chat import ChatRequest, StreamEvent
from paymaster.domain.embeddings import EmbeddingRequest
from paymaster.domain.errors import InvalidRequestError, PayloadTooLargeError, PaymasterError
from paymaster.domain.identity import Caller
from paymaster.domain.limits import Hold, amount_text
from paymaster.domain.metering import Bill
from paymaster.domain.spend import spend_query
from paymaster.ports import HttpRequest
from paymaster.services.chat import ChatService
from paymaster.services.embeddings import EmbeddingsService
from paymaster.services.identify import IdentifyService
from paymaster.services.routing import BudgetView, Exchange
from paymaster.services.usage import UsageService

logger = Logger(service="paymaster")

Handler = Callable[[Request, str], Awaitable[Response]]
# Far deeper than any chat request or JSON Schema of a tool needs; far below Python's recursion limit.
MAX_JSON_DEPTH = 64
T = TypeVar("T")
Body = TypeVar("Body", bound=BaseModel)


def create_app(  # noqa: PLR0915 - one closure per route, sharing the app's dependencies
    *,
    identify: IdentifyService,
    chat: ChatService,
    embeddings: EmbeddingsService,
    usage: UsageService,
    max_body_bytes: int,
    one_request_at_a_time: bool = False,
) -> Starlette:
    """`one_request_at_a_time`: the process never serves two requests at once (a Lambda execution
    environment), so a request's blocking part (admit, call, settle; a stream's admission and
    first event) runs on the event loop instead of paying a worker-thread hop. A stream's later
    chunks are always pulled in worker threads."""
    blocking = _on_the_loop if one_request_at_a_time else run_in_threadpool

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise PayloadTooLargeError(f"The request body is over the gateway's limit of {max_body_bytes} bytes.")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > max_body_bytes:
                raise PayloadTooLargeError(f"The request body is over the gateway's limit of {max_body_bytes} bytes.")
        return bytes(body)

    async def caller_of(request: Request, body: bytes) -> Caller:
        return identify.identify(
            HttpRequest(
                method=request.method,
                url=_url_as_sent(request),
                headers={name.lower(): value for name, value in request.headers.items()},
                body=body,
            )
        )

    def handled(route: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Turns PaymasterError into its answer; anything else is a logged 500, never a pass."""

        async def endpoint(request: Request) -> Response:
            rid = gateway_request_id(request.headers) or uuid.uuid4().hex
            headers = {names.HEADER_REQUEST_ID: rid}
            try:
                response = await route(request, rid)
            except PaymasterError as error:
                status, _ = status_and_type(error)
                logger.info("refused", extra={"request_id": rid, "status": status, "code": error.code})
                return error_response(error, headers)
            except Exception:
                logger.exception("unexpected error", extra={"request_id": rid})
                body = error_body(f"The gateway failed unexpectedly (request {rid}).", "server_error", "internal_error")
                return JSONResponse(body, status_code=500, headers=headers)
            response.headers.update(headers)
            return response

        return endpoint

    async def chat_completions(request: Request, rid: str) -> Response:
        body = await read_body(request)
        caller = await caller_of(request, body)
        chat_request = _parse(ChatRequest, body)
        metadata = _metadata(request)
        created = int(time.time())
        if not chat_request.stream:
            # The whole blocking part in one go: admit, call, settle.
            exchange, completion, budgets = await blocking(chat.answer, caller, chat_request, rid, metadata)
            envelope = openai_wire.Envelope(f"chatcmpl-{rid}", exchange.admission.model_name, created)
            assert exchange.bill is not None  # settled before `answer` returns
            return JSONResponse(
                openai_wire.completion_body(envelope, completion, exchange.bill),
                headers=_served_headers(exchange, budgets) | bill_headers(exchange.bill),
            )
        exchange, first, events, budgets = await blocking(chat.open_stream, caller, chat_request, rid, metadata)
        envelope = openai_wire.Envelope(f"chatcmpl-{rid}", exchange.admission.model_name, created)
        headers = _served_headers(exchange, budgets)
        lines = _sse_lines(envelope, first, events, include_usage=chat_request.include_usage, rid=rid)
        return SettlingStream(
            lines,
            events,
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def embed(request: Request, rid: str) -> Response:
        body = await read_body(request)
        caller = await caller_of(request, body)
        embedding_request = _parse(EmbeddingRequest, body)
        exchange, vectors, budgets = await blocking(
            embeddings.embed, caller, embedding_request, rid, _metadata(request)
        )
        assert exchange.bill is not None  # settled before `embed` returns
        payload = embeddings_wire.embeddings_body(
            exchange.admission.model_name, vectors, embedding_request.encoding_format, exchange.bill.usage.input_tokens
        )
        return JSONResponse(payload, headers=_served_headers(exchange, budgets) | bill_headers(exchange.bill))

    async def team_usage(request: Request, rid: str) -> Response:
        caller = await caller_of(request, await read_body(request))
        query = spend_query(_one_param(request, "month"), _one_param(request, "by"))
        answer = await blocking(usage.usage, caller, query, _one_param(request, "user"))
        return JSONResponse(usage_wire.usage_body(caller, answer))

    async def models(request: Request, rid: str) -> Response:
        caller = await caller_of(request, await read_body(request))
        created = int(time.time())
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "paymaster"} for name in chat.models(caller)
        ]
        return JSONResponse({"object": "list", "data": data})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", handled(chat_completions), methods=["POST"]),
            Route("/v1/embeddings", handled(embed), methods=["POST"]),
            Route("/v1/models", handled(models), methods=["GET"]),
            Route("/v1/usage", handled(team_usage), methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def http_error(_: Request, error: Exception) -> Response:
    """Starlette's own 404 / 405, in OpenAI's error shape like every other answer."""
    assert isinstance(error, HTTPException)
    code = "not_found" if error.status_code == 404 else "method_not_allowed" if error.status_code == 405 else None
    return JSONResponse(
        error_body(str(error.detail), "invalid_request_error", code),
        status_code=error.status_code,
        headers=error.headers,
    )


async def _on_the_loop(call: Callable[..., T], *args: Any) -> T:
    return call(*args)


def _served_headers(exchange: Exchange, budgets: BudgetView) -> dict[str, str]:
    """Which deployment served (and which failed first), what the gateway changed, the budget."""
    admission = exchange.admission
    headers = {names.HEADER_DEPLOYMENT: exchange.deployment.label}
    if len(exchange.tried) > 1:
        headers[names.HEADER_TRIED] = ", ".join(exchange.tried[:-1])
    if admission.downgraded_from:
        headers[names.HEADER_DOWNGRADED_FROM] = admission.downgraded_from
    if isinstance(exchange.request, ChatRequest) and admission.max_output_tokens != exchange.request.output_limit:
        headers[names.HEADER_MAX_TOKENS] = str(admission.max_output_tokens)  # the gateway chose it
    return headers | budget_headers(admission.holds, budgets)


def _metadata(request: Request) -> dict[str, str]:
    """`x-paymaster-meta-<key>: value` headers: the caller's own labels for rules to match on."""
    prefix = names.HEADER_METADATA_PREFIX
    return {name[len(prefix) :]: value for name, value in request.headers.items() if name.startswith(prefix)}


def budget_headers(holds: Sequence[Hold], view: BudgetView) -> dict[str, str]:
    """The tightest budget this request counted against: least remaining share of its limit,
    as the container last read it (`x-paymaster-budget-as-of`, at most a second old)."""
    counters = view.counters
    budgets = [hold for hold in holds if hold.rule.is_budget and (hold.pk, hold.sk) in counters]
    if not budgets:
        return {}

    def remaining(hold: Hold) -> int:
        return max(0, hold.rule.cap - counters[(hold.pk, hold.sk)].committed)

    hold = min(budgets, key=lambda hold: remaining(hold) / hold.rule.cap)
    return {
        "x-paymaster-budget-rule": hold.rule.name,
        "x-paymaster-budget-scope": hold.bucket,
        "x-paymaster-budget-limit": amount_text(hold.rule, hold.rule.cap),
        "x-paymaster-budget-remaining": amount_text(hold.rule, remaining(hold)),
        "x-paymaster-budget-unit": hold.rule.unit,
        "x-paymaster-budget-reset": hold.window.end.isoformat(),
        "x-paymaster-budget-as-of": view.as_of.isoformat(),
    }


def _one_param(request: Request, name: str) -> str | None:
    """The query string's `name`, given at most once: `?by=app&by=model` asks two things at once."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise InvalidRequestError(f"Give `{name}` at most once; it was given {len(values)} times.", param=name)
    return values[0] if values else None


def _url_as_sent(request: Request) -> str:
    """scheme://host/path?query with the path's percent-encoding exactly as the client sent it."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    host = request.headers.get("host", "")
    url = f"{request.url.scheme}://{host}{raw_path.decode('latin-1')}"
    return f"{url}?{query.decode('latin-1')}" if query else url


def _parse(model: type[Body], body: bytes) -> Body:
    try:
        raw = json.loads(body)
    except RecursionError:
        raise InvalidRequestError(f"The body nests JSON deeper than {MAX_JSON_DEPTH} levels.") from None
    except ValueError as error:
        raise InvalidRequestError(f"The body is not valid JSON: {error}.") from None
    if not isinstance(raw, dict):
        raise InvalidRequestError("The body must be a JSON object.")
    if _nested_deeper_than(raw, MAX_JSON_DEPTH):
        raise InvalidRequestError(f"The body nests JSON deeper than {MAX_JSON_DEPTH} levels.")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidRequestError(f"Invalid `{param}`: {first['msg']}.", param=param) from None


def _nested_deeper_than(value: object, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` deep (the body itself is level 1).

    Walked without recursion: a body the parser took may still be too deep for what handles it
    next — validation, re-encoding for the provider — inside a call stack already many frames deep.
    """
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _sse_lines(
    envelope: openai_wire.Envelope,
    first: StreamEvent | Bill | None,
    events: Generator[StreamEvent | Bill, None, None],
    *,
    include_usage: bool,
    rid: str,
) -> Generator[bytes, None, None]:
    """The SSE answer; closing it closes the provider stream.

    Once the status line is sent, a failure can only be told in the stream: as OpenAI does, one
    `data: {"error": ...}` event, which the openai SDK raises as an APIError — followed by what
    the request was charged, as the successful end of a stream says it.
    """
    try:
        primed = chain(() if first is None else (first,), events)
        yield from openai_wire.chunks(envelope, primed, include_usage=include_usage)
    except PaymasterError as error:
        _, kind = status_and_type(error)
        logger.info("stream failed", extra={"request_id": rid, "code": error.code})
        yield openai_wire.sse(error_body(error.message, kind, error.code))
        if error.bill is not None:
            yield openai_wire.bill_trailer(error.bill)
    except Exception:
        # Settled already (the service's `finally`); the caller still gets an answer, not a cut.
        logger.exception("stream failed unexpectedly", extra={"request_id": rid})
        yield openai_wire.sse(error_body(f"The stream failed (request {rid}).", "server_error", "internal_error"))
    finally:
        events.close()


class SettlingStream(StreamingResponse):
    """An SSE response that closes the provider stream however the response ends.

    Starlette stops pulling the body when the client goes away but never closes it, and a body
    cancelled before its first pull never runs its `finally`: left to garbage collection, the
    stream would settle late, or — in a Lambda environment frozen first — never (the sweeper
    would return the hold). Closing `lines` then `events` here settles it before the response
    is done; both closes are idempotent.
    """

    def __init__(
        self,
        lines: Generator[bytes, None, None],
        events: Generator[StreamEvent | Bill, None, None],
        **kwargs: Any,
    ) -> None:
        super().__init__(_relayed(lines), **kwargs)
        self._closers = (lines.close, events.close)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                for close in self._closers:
                    await run_in_threadpool(close)


async def _relayed(lines: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    """The blocking provider stream, pulled by one thread of its own for its whole life, and
    handed to the event loop in batches: whatever arrived since the loop last took some.

    One thread hop per SSE line (as a worker-thread `next` each time) cost more than the rest of
    a streamed request; a fast provider's burst of lines now costs one wake-up and one write, a
    slow one's token still goes out as soon as it arrives. When the response ends early (the
    client gone), the thread stops after the line it is waiting for and closes `lines` itself —
    a generator can only be closed by the thread running it — and this waits for that, so the
    stream is settled before the response is done (`SettlingStream` then closes nothing twice).
    """
    relay = _Relay(lines, asyncio.get_running_loop())
    try:
        async for batch in relay.batches():
            yield batch
    finally:
        await relay.stopped()


class _Relay:
    def __init__(self, lines: Generator[bytes, None, None], loop: asyncio.AbstractEventLoop) -> None:
        self._lines = lines
        self._loop = loop
        self._lock = threading.Lock()
        self._arrived: deque[bytes] = deque()
        self._waking = False  # a wake-up is on its way to the loop
        self._stop = False
        self._done = False
        self._error: BaseException | None = None
        self._ready = asyncio.Event()
        self._finished = loop.create_future()
        threading.Thread(target=self._pull, name="paymaster-stream", daemon=True).start()

    async def batches(self) -> AsyncIterator[bytes]:
        while True:
            await self._ready.wait()
            self._ready.clear()
            with self._lock:
                batch, done = b"".join(self._arrived), self._done
                self._arrived.clear()
            if batch:
                yield batch
            if done:
                break
        if self._error is not None:
            raise self._error

    async def stopped(self) -> None:
        """Asks the thread to stop and waits until it has closed the stream, even if cancelled."""
        self._stop = True
        with anyio.CancelScope(shield=True):
            await self._finished

    def _pull(self) -> None:
        try:
            for line in self._lines:
                self._hand(line)
                if self._stop:
                    break
        except BaseException as error:  # noqa: BLE001 - raised on the loop, by `batches`
            self._error = error
        finally:
            try:
                self._lines.close()
            finally:
                with self._lock:
                    self._done = True
                self._hand(None)
                self._loop.call_soon_threadsafe(self._finish)

    def _hand(self, line: bytes | None) -> None:
        with self._lock:
            if line is not None:
                self._arrived.append(line)
            waking, self._waking = self._waking, True
        if not waking:
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        with self._lock:
            self._waking = False
        self._ready.set()

    def _finish(self) -> None:
        if not self._finished.done():
            self._finished.set_result(None)
