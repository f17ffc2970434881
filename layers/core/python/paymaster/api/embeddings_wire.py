"""paymaster's embeddings answer in OpenAI's exact wire format (`list` of `embedding` objects).

The gateway renders the format the caller asked for itself, whatever the provider sent: `float`
is a JSON array of numbers; `base64` is the vector's little-endian float32 bytes in base64 — what
the openai SDK asks for by default and decodes, a quarter of the size of the JSON numbers.
"""

import base64
import struct
from typing import Any

from paymaster.domain.embeddings import Embeddings, EncodingFormat


def embeddings_body(
    model: str, embeddings: Embeddings, encoding_format: EncodingFormat, usage_tokens: int
) -> dict[str, Any]:
    """`model` is the name the caller used; `usage_tokens` the input tokens to report (embeddings
    have no output, so `total_tokens` is the same number)."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": _encoded(vector, encoding_format)}
            for index, vector in enumerate(embeddings.vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": usage_tokens, "total_tokens": usage_tokens},
    }


def _encoded(vector: tuple[float, ...], encoding_format: EncodingFormat) -> list[float] | str:
    if encoding_format == "float":
        return list(vector)
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
