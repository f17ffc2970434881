"""Contract tests are pure: recorded payloads in, no sockets."""

import socket

import pytest


@pytest.fixture(autouse=True)
def _no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise RuntimeError("contract tests must not open sockets")

    monkeypatch.setattr(socket, "socket", refuse)
