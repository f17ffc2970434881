"""moto in server mode, with DynamoDB requests serialised.

moto's DynamoDB is not atomic under concurrent requests (measured: 104–108 of 100 conditional
decrements succeeded from 32 threads; concurrent ADDs lost updates). Real DynamoDB applies each
write to an item atomically, so the local server runs one DynamoDB request at a time. Other
services stay concurrent.

    python -m paymaster_local.aws --port 5000
"""

import argparse
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.server import (  # type: ignore[attr-defined]  # moto does not re-export them
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerialisedDynamoDB:
    """WSGI middleware: `X-Amz-Target: DynamoDB_*` requests run one at a time, to completion."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self._app(environ, start_response)
        with self._lock:
            return list(self._app(environ, start_response))


def make_moto_server(host: str, port: int) -> BaseWSGIServer:
    app = SerialisedDynamoDB(DomainDispatcherApplication(create_backend_app))
    return make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    make_moto_server(args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
