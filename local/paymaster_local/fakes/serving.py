"""Run an ASGI app with uvicorn on a background thread, for tests and the local stack."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

_GRACEFUL_SHUTDOWN_S = 1
_POLL_S = 0.01


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", startup_timeout_s: float = 5.0) -> Iterator[str]:
    """Serve ``app`` on a free port of ``host``; yield its base URL, e.g. ``http://127.0.0.1:41237``.

    The socket is bound before the server starts, so the port is known and cannot be taken. On exit
    the server stops accepting, gives open streams `_GRACEFUL_SHUTDOWN_S` to finish, cancels the
    rest and its thread is joined; a server that will not stop raises `RuntimeError`.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {host}:{port}")
            time.sleep(_POLL_S)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=_GRACEFUL_SHUTDOWN_S + startup_timeout_s)
        sock.close()
        if thread.is_alive():
            raise RuntimeError(f"uvicorn on {host}:{port} did not stop")
