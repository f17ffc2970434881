"""The local AWS stand-in: moto in server mode, with DynamoDB made to behave like DynamoDB.

Three things moto 5.2.5 does not do the way the gateway relies on, fixed here:

- **Per-item atomicity.** moto's DynamoDB is not atomic under concurrent requests (measured:
  104–108 of 100 conditional decrements succeeded from 32 threads; concurrent ADDs lost
  updates). Real DynamoDB applies each write to an item atomically, so DynamoDB requests run one
  at a time here. Other services stay concurrent.
- **Transactions at a flat cost.** moto copies whole tables to back a transaction up; the local
  server uses `dynamodb_transactions`, which checks first and backs up only what it touches.
- **Kept-alive connections.** moto's own server (werkzeug's) closes the connection after every
  answer — a new TCP connection and a new thread per DynamoDB call, on both sides. The local
  server is waitress, which keeps HTTP/1.1 connections alive, as DynamoDB's endpoint does.
- **`ClientRequestToken`.** moto ignores it. Here a TransactWriteItems that succeeded with a
  token is answered again, without being applied again, when the same token comes back with the
  same request within the idempotency window; the same token with another request is
  `IdempotentParameterMismatchException`. That is how a gateway that timed out after its
  admission committed learns that it did.

    python -m paymaster_local.aws --port 5000
"""

import argparse
import hashlib
import io
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from moto.server import (  # type: ignore[attr-defined]  # moto does not re-export them
    DomainDispatcherApplication,
    create_backend_app,
)
from waitress.server import create_server

from paymaster_local import dynamodb_transactions

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

TRANSACT_WRITE_ITEMS = "DynamoDB_20120810.TransactWriteItems"
MOTO_RESET = "/moto-api/reset"
STATS_PATH = "/_standin/stats"  # {"dynamodb_requests": n}: what the soak divides the stand-in's CPU by
THREADS = 32
# DynamoDB keeps a client request token for 10 minutes after the request that used it completed.
TOKEN_WINDOW_S = 600.0


class LocalDynamoDB:
    """WSGI middleware: `X-Amz-Target: DynamoDB_*` requests run one at a time, to completion,
    and TransactWriteItems honours `ClientRequestToken`. `clock` is monotonic seconds."""

    def __init__(self, app: WsgiApp, clock: Callable[[], float] = time.monotonic) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._clock = clock
        # Oldest first (the clock is monotonic), so expiry pops from the front: O(1) per request
        # however many tokens the window holds (a soak's 10,000 admissions fit in 10 minutes).
        self._tokens: OrderedDict[str, tuple[float, str, list[tuple[str, str]], bytes]] = OrderedDict()
        self._served = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB_"):
            if environ.get("PATH_INFO") == STATS_PATH:
                return _json(start_response, "200 OK", {"dynamodb_requests": self._served})
            if environ.get("PATH_INFO") == MOTO_RESET:
                with self._lock:
                    self._tokens.clear()  # a new world: the tokens of the old one mean nothing
            return self._app(environ, start_response)
        token, fingerprint = None, ""
        if target == TRANSACT_WRITE_ITEMS:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            token, fingerprint = _token_and_fingerprint(body)
        with self._lock:
            self._served += 1
            if token is None:
                return list(self._app(environ, start_response))
            return self._idempotent(token, fingerprint, environ, start_response)

    def _idempotent(
        self, token: str, fingerprint: str, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> list[bytes]:
        now = self._clock()
        while self._tokens and now - next(iter(self._tokens.values()))[0] >= TOKEN_WINDOW_S:
            self._tokens.popitem(last=False)
        seen = self._tokens.get(token)
        if seen is not None:
            _, seen_fingerprint, headers, body = seen
            if seen_fingerprint != fingerprint:
                return _error(
                    start_response,
                    "IdempotentParameterMismatchException",
                    "The request uses the same client token as a previous, but non-identical request.",
                )
            start_response("200 OK", headers)
            return [body]
        answer: dict[str, Any] = {}

        def remember(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            answer["status"], answer["headers"] = status, headers
            return start_response(status, headers, *args)

        parts = list(self._app(environ, remember))
        if answer.get("status", "").startswith("200"):
            self._tokens[token] = (self._clock(), fingerprint, answer["headers"], b"".join(parts))
        return parts


def _token_and_fingerprint(body: bytes) -> tuple[str | None, str]:
    """The request's ClientRequestToken, and a digest of the rest of it (what must match)."""
    try:
        request = json.loads(body)
    except ValueError:
        return None, ""
    token = request.pop("ClientRequestToken", None) if isinstance(request, dict) else None
    if not isinstance(token, str):
        return None, ""
    return token, hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def _error(start_response: Callable[..., Any], code: str, message: str) -> list[bytes]:
    return _json(
        start_response,
        "400 Bad Request",
        {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message},
        "application/x-amz-json-1.0",
    )


def _json(
    start_response: Callable[..., Any], status: str, payload: object, content_type: str = "application/json"
) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


class LocalAwsServer:
    """moto behind waitress: `serve_forever()` in a thread or process, `shutdown()` to stop."""

    def __init__(self, host: str, port: int, clock: Callable[[], float]) -> None:
        dynamodb_transactions.install()
        app = LocalDynamoDB(DomainDispatcherApplication(create_backend_app), clock)
        # Threads: DynamoDB requests queue on one lock, but an SQS long poll holds its thread for
        # its wait, so there are enough for the pollers and the gateway's pool at once.
        self._server = create_server(
            app, host=host, port=port, threads=THREADS, connection_limit=1000, backlog=1024, ident="moto"
        )

    @property
    def server_port(self) -> int:
        return int(self._server.effective_port)

    def serve_forever(self) -> None:
        self._server.run()

    def shutdown(self) -> None:
        self._server.close()


def make_moto_server(host: str, port: int, *, clock: Callable[[], float] = time.monotonic) -> LocalAwsServer:
    return LocalAwsServer(host, port, clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    make_moto_server(args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
