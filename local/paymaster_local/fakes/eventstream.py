"""AWS event-stream framing (``application/vnd.amazon.eventstream``) for the fake Bedrock.

One message, all integers big-endian, CRC32 as in zlib:

    [total length u32][headers length u32][prelude CRC u32 — of the 8 bytes before it]
    [headers: name length u8, name, value type u8 (7 = string), value length u16, value] ...
    [payload: compact JSON]
    [message CRC u32 — of every byte before it, prelude CRC included]

Example: ``encode_event("messageStop", {"stopReason": "end_turn"})`` is 122 bytes:
12 prelude + 81 headers (``:event-type``, ``:content-type``, ``:message-type``) + 25 payload + 4.
`corrupt_message_crc` makes a frame whose lengths and prelude are right but whose message CRC is
not, so that a reader takes it in whole and then rejects it (botocore: ``ChecksumMismatch``).
`encode_exception` frames an error Bedrock reports inside a stream after its 200 (``:message-type``
= exception, e.g. ``throttlingException``, ``modelStreamErrorException``).
"""

import json
import struct
import zlib
from collections.abc import Mapping

_STRING_HEADER_TYPE = 7
_PRELUDE_BYTES = 12
_MESSAGE_CRC_BYTES = 4


def _string_header(name: str, value: str) -> bytes:
    name_bytes = name.encode()
    value_bytes = value.encode()
    return (
        struct.pack(">B", len(name_bytes))
        + name_bytes
        + struct.pack(">BH", _STRING_HEADER_TYPE, len(value_bytes))
        + value_bytes
    )


def encode_event(event_type: str, payload: Mapping[str, object]) -> bytes:
    """Frame ``payload`` as one JSON event named ``event_type`` (``:message-type`` = event)."""
    headers = ((":event-type", event_type), (":content-type", "application/json"), (":message-type", "event"))
    return _encode(headers, payload)


def encode_exception(exception_type: str, message: str) -> bytes:
    """Frame an in-stream exception as Bedrock sends one: ``{"message": ...}`` under ``:exception-type``."""
    headers = (
        (":exception-type", exception_type),
        (":content-type", "application/json"),
        (":message-type", "exception"),
    )
    return _encode(headers, {"message": message})


def _encode(string_headers: tuple[tuple[str, str], ...], payload: Mapping[str, object]) -> bytes:
    headers = b"".join(_string_header(name, value) for name, value in string_headers)
    body = json.dumps(payload, separators=(",", ":")).encode()
    total_length = _PRELUDE_BYTES + len(headers) + len(body) + _MESSAGE_CRC_BYTES
    lengths = struct.pack(">II", total_length, len(headers))
    message = lengths + struct.pack(">I", zlib.crc32(lengths)) + headers + body
    return message + struct.pack(">I", zlib.crc32(message))


def corrupt_message_crc(frame: bytes) -> bytes:
    """``frame`` with every bit of its trailing message CRC flipped."""
    (crc,) = struct.unpack(">I", frame[-_MESSAGE_CRC_BYTES:])
    return frame[:-_MESSAGE_CRC_BYTES] + struct.pack(">I", crc ^ 0xFFFFFFFF)
