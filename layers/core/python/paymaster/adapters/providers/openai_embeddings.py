"""OpenAI Embeddings (`POST {base_url}/embeddings`), and any server that speaks it.

The body is rebuilt from the validated request: the deployment's model id, the caller's `input`
as given (text or token ids), `dimensions` and `user` when set. The provider is always asked for
`encoding_format: "base64"`, as the openai SDK asks: float32 bytes are a quarter of the size of
JSON numbers and quicker to read. Servers that ignore it and send numbers are read as well. The
caller's own `encoding_format` is rendered by the gateway (`paymaster.api.embeddings_wire`).

`usage.prompt_tokens` is the provider's count; anything but a positive integer there is no count
(`Embeddings.input_tokens` None), never zero.
"""

import base64
import binascii
import struct
from collections.abc import Callable
from typing import Any

import httpx

from paymaster.adapters.providers.openai_compatible import bearer, openai_api
from paymaster.adapters.providers.sending import before_sending
from paymaster.domain.embeddings import Embeddings
from paymaster.domain.errors import ProviderResponseError
from paymaster.domain.policy import Timeouts
from paymaster.ports import EmbeddingCall


def to_wire(call: EmbeddingCall) -> dict[str, Any]:
    request = call.request
    body: dict[str, Any] = {"model": call.deployment.model, "input": request.input, "encoding_format": "base64"}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    if request.user is not None:
        body["user"] = request.user
    return body


def from_wire(body: dict[str, Any], inputs: int, request_id: str | None = None) -> Embeddings:
    """`inputs` is how many vectors the request asked for; the answer must hold one per input."""
    try:
        data = sorted(body["data"], key=lambda item: int(item["index"]))
        if [int(item["index"]) for item in data] != list(range(inputs)):
            raise ValueError(f"{len(data)} vectors for {inputs} inputs")
        vectors = tuple(vector_from_wire(item["embedding"]) for item in data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ProviderResponseError(
            f"the provider's answer is not an embeddings list ({error!r})", provider_request_id=request_id
        ) from None
    return Embeddings(vectors=vectors, input_tokens=_prompt_tokens(body.get("usage")), provider_request_id=request_id)


def vector_from_wire(embedding: object) -> tuple[float, ...]:
    """A JSON array of numbers, or base64 of little-endian float32."""
    if isinstance(embedding, str):
        try:
            raw = base64.b64decode(embedding, validate=True)
        except binascii.Error:
            raise ValueError("an embedding is not valid base64") from None
        if not raw or len(raw) % 4:
            raise ValueError(f"an embedding of {len(raw)} bytes is not a float32 vector")
        return struct.unpack(f"<{len(raw) // 4}f", raw)
    if not isinstance(embedding, list) or not embedding:
        raise ValueError("an embedding is neither a list of numbers nor base64")
    return tuple(float(number) for number in embedding)


def _prompt_tokens(usage: object) -> int | None:
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0:
        return tokens
    return None


class OpenAIEmbeddingsProvider:
    """`transport` is the connection pool (see `http_api`); `base_url` the API root, e.g.
    https://api.openai.com/v1."""

    def __init__(
        self,
        transport: httpx.BaseTransport,
        base_url: str,
        api_key: Callable[[], str | None],
        timeouts: Timeouts,
    ) -> None:
        self._api = openai_api(transport, base_url, "/embeddings", timeouts)
        self._api_key = api_key

    def embed(self, call: EmbeddingCall) -> Embeddings:
        with before_sending(call.deployment):
            wire, headers = to_wire(call), bearer(self._api_key)
        body, request_id = self._api.post(wire, headers)
        return from_wire(body, len(call.request.inputs), request_id)
