"""A Bedrock endpoint over real HTTP that answers each request with the bytes a test scripts: JSON,
event-stream frames, AWS errors, answers too late, stalls and cuts — for comparing Bedrock clients
and for pinning what the providers make of each answer."""

import contextlib
import json
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from paymaster_local.fakes.eventstream import encode_event
from tests.contract.recordings import recorded_json, recorded_jsonl

REQUEST_ID = "7d3c1a9e-5b2f-4e60-8a14-c2f9e6b1d057"
EVENT_STREAM = {"content-type": "application/vnd.amazon.eventstream"}
# The recorded ConverseStream answer, one frame per event.
STREAM = [encode_event(*next(iter(event.items()))) for event in recorded_jsonl("bedrock/converse_stream_text.jsonl")]
# How long the clients under test wait for each read: 0.3 s timed out a normal answer once in a
# full run on a loaded machine.
FIRST_BYTE_S = 1.0
LATE_S = 3.0  # well past that


@dataclass(frozen=True)
class Reply:
    """What the server sends for one request. `parts` are bytes sent as they come or pauses in
    seconds; a stream is chunked, anything else has a Content-Length (`declared` overrides it).
    `cut` closes the connection after the parts instead of ending the body."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    parts: Sequence[bytes | float] = ()
    stream: bool = False
    cut: bool = False
    declared: int | None = None
    head_after_s: float = 0.0


LATE = Reply(head_after_s=LATE_S)
CUT_SHORT = Reply(headers={"content-type": "application/json"}, parts=[b'{"output": {"mess'], declared=300, cut=True)


def stream_then(*after: bytes | float, cut: bool = False) -> Reply:
    """The recorded stream's first three frames (messageStart and two text deltas), then `after`."""
    return Reply(headers=EVENT_STREAM, parts=[*STREAM[:3], *after], stream=True, cut=cut)


STALLED = stream_then(LATE_S, *STREAM[3:])
CUT_MID_STREAM = stream_then(cut=True)


def exchange(name: str) -> Reply:
    """A recorded HTTP exchange (`events/providers`) as the server's reply."""
    recorded = recorded_json(name)
    headers = {key: value for key, value in recorded["headers"].items() if key not in ("content-length", "connection")}
    body = json.dumps(recorded["body"], separators=(",", ":"), ensure_ascii=False).encode()
    return Reply(recorded["status"], headers, [body])


def aws_error(status: int, error_type: str, message: str) -> Reply:
    """An error as Bedrock answers one: its name in x-amzn-ErrorType, `{"message": ...}`."""
    return Reply(status, {"x-amzn-ErrorType": error_type}, [json.dumps({"message": message}).encode()])


class ScriptedBedrock:
    """Answers each request with the next queued `Reply`, and keeps (method, raw path, headers,
    body) of each request."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        self.release = threading.Event()  # ends the pauses when a test is over

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("content-length", 0)))
        headers = {name.lower(): value for name, value in handler.headers.items()}
        self.received.append((handler.command, handler.path, headers, body))
        reply = self.replies.pop(0)
        if reply.head_after_s and self.release.wait(reply.head_after_s):
            return
        sent = b"".join(part for part in reply.parts if isinstance(part, bytes))
        handler.send_response(reply.status)
        for name, value in (
            {"x-amzn-requestid": REQUEST_ID} | {k.lower(): v for k, v in reply.headers.items()}
        ).items():
            handler.send_header(name, value)
        if reply.stream:
            handler.send_header("transfer-encoding", "chunked")
        else:
            handler.send_header("content-length", str(reply.declared if reply.declared is not None else len(sent)))
        handler.end_headers()
        for part in reply.parts:
            if isinstance(part, float):
                handler.wfile.flush()
                if self.release.wait(part):
                    return
                continue
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if reply.stream else part)
        if reply.cut:
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
        elif reply.stream:
            handler.wfile.write(b"0\r\n\r\n")


def handler(current: list[ScriptedBedrock]) -> type[BaseHTTPRequestHandler]:
    """A request handler answering as `current[0]` scripts it (a test swaps in a fresh one)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle(self) -> None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client that gave up
                super().handle()

        def do_POST(self) -> None:
            current[0].answer(self)

        def date_time_string(self, timestamp: float | None = None) -> str:
            return "Sun, 29 Nov 2026 09:14:27 GMT"  # every answer alike, whichever client asked

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: ten connections at once (a Titan batch embeds its
    # texts in parallel) overflow it under load, the kernel drops a SYN, and the client's 1 s
    # connect timeout fires before its retransmission — a flake of the test server, not the client.
    request_queue_size = 128


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serves `handler` on a free port of 127.0.0.1, a thread per request; yields the base URL."""
    httpd = _Server(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
