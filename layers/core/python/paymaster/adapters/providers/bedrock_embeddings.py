"""Amazon Bedrock embeddings through InvokeModel (`adapters/bedrock_runtime.py`), one body per model family.

The family comes from the deployment's model id — a base model id, an inference profile id
(`us.cohere.embed-v4:0`) or either's ARN:

    family     model ids                                  texts per call  dimensions
    titan-v1   amazon.titan-embed-text-v1                 1               fixed (1536)
    titan-v2   amazon.titan-embed-text-v2:0               1               256, 512, 1024 (default)
    cohere-v3  cohere.embed-english-v3,                   96              fixed (1024)
               cohere.embed-multilingual-v3
    cohere-v4  cohere.embed-v4:0                          96              256, 512, 1024, 1536 (default)

Any other model id is refused (`family_of` returns None: the composition root can check every
deployment at cold start). Everything the request cannot be served with — token ids, `dimensions`
the model does not offer — is refused with InvalidRequestError before the first call.

Titan takes one text per call, so N texts are N calls, and Cohere more than 96 texts several;
these run `max_concurrency` at a time, and their vectors and token counts are put back together
in input order. If one fails after another succeeded, the error is marked `accepted`: Bedrock
bills the calls that succeeded, so the caller must charge the reservation, not release it.

Cohere's `input_type` is always `search_document` — the right choice for the texts one stores
and the usual one for an OpenAI-shaped client, which has no field to say otherwise. (Cohere
embeds queries a little better with `search_query`; an explicit field for it would be a
paymaster extension of OpenAI's body.) `user` is not sent: Bedrock has no such field.

The token count is Bedrock's `x-amzn-bedrock-input-token-count` header — what it meters — or,
for Titan, the body's `inputTextTokenCount` when the header is absent. A call with neither makes
the whole answer's count None (charge the reservation), never zero.
"""

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, Final, Literal

from botocore.exceptions import BotoCoreError

from paymaster.adapters.providers.bedrock import _provider_errors
from paymaster.adapters.providers.sending import before_sending
from paymaster.domain.embeddings import Embeddings
from paymaster.domain.errors import InvalidRequestError, ProviderError, ProviderResponseError
from paymaster.ports import EmbeddingCall

Family = Literal["titan-v1", "titan-v2", "cohere-v3", "cohere-v4"]

_FAMILIES: Final[tuple[tuple[str, Family], ...]] = (
    ("amazon.titan-embed-text-v1", "titan-v1"),
    ("amazon.titan-embed-text-v2", "titan-v2"),
    ("cohere.embed-english-v3", "cohere-v3"),
    ("cohere.embed-multilingual-v3", "cohere-v3"),
    ("cohere.embed-v4", "cohere-v4"),
)
DIMENSIONS: Final[dict[Family, tuple[int, ...]]] = {
    "titan-v1": (),
    "titan-v2": (256, 512, 1024),
    "cohere-v3": (),
    "cohere-v4": (256, 512, 1024, 1536),
}
COHERE_TEXTS_PER_CALL: Final = 96
COHERE_INPUT_TYPE: Final = "search_document"
INPUT_COUNT_HEADER: Final = "x-amzn-bedrock-input-token-count"


def family_of(model_id: str) -> Family | None:
    """The embeddings family of a model id, an inference profile id or an ARN; None if unknown."""
    name = model_id.rsplit("/", 1)[-1]
    for candidate in (name, name.partition(".")[2]):  # `us.cohere.embed-v4:0` → `cohere.embed-v4:0`
        for prefix, family in _FAMILIES:
            if candidate.startswith(prefix):
                return family
    return None


def batches(call: EmbeddingCall) -> list[list[str]]:
    """The texts of each call the request needs, in input order; refuses what cannot be served."""
    family = _family(call)
    texts = call.request.texts
    dimensions = call.request.dimensions
    if dimensions is not None and dimensions not in DIMENSIONS[family]:
        offered = DIMENSIONS[family]
        raise InvalidRequestError(
            f"The model `{call.request.model}` offers `dimensions` of {', '.join(map(str, offered))}."
            if offered
            else f"The model `{call.request.model}` has a fixed size: `dimensions` cannot be set.",
            param="dimensions",
        )
    size = 1 if family.startswith("titan") else COHERE_TEXTS_PER_CALL
    return [texts[start : start + size] for start in range(0, len(texts), size)]


def to_wire(call: EmbeddingCall, texts: Sequence[str]) -> dict[str, Any]:
    """Keyword arguments for one `invoke_model` embedding `texts` (one text for Titan)."""
    family = _family(call)
    dimensions = call.request.dimensions
    body: dict[str, Any]
    if family.startswith("titan"):
        (text,) = texts
        body = {"inputText": text}
        if dimensions is not None:
            body["dimensions"] = dimensions
    else:
        body = {"texts": list(texts), "input_type": COHERE_INPUT_TYPE}
        if family == "cohere-v4":
            body["embedding_types"] = ["float"]
            if dimensions is not None:
                body["output_dimension"] = dimensions
    return {
        "modelId": call.deployment.model,
        "body": json.dumps(body, separators=(",", ":")),
        "contentType": "application/json",
        "accept": "application/json",
    }


def from_wire(call: EmbeddingCall, body: bytes, metadata: Mapping[str, Any], texts: int) -> Embeddings:
    """One `invoke_model` answer: its body and `ResponseMetadata`, for a call embedding `texts` texts."""
    family = _family(call)
    request_id = metadata.get("RequestId")
    try:
        answer = json.loads(body)
        if family.startswith("titan"):
            vectors = [answer["embedding"]]
            body_tokens = _positive(answer.get("inputTextTokenCount"))
        else:
            embeddings = answer["embeddings"]
            vectors = embeddings["float"] if isinstance(embeddings, dict) else embeddings
            body_tokens = None
        if len(vectors) != texts:
            raise ValueError(f"{len(vectors)} vectors for {texts} texts")
        floats = tuple(_vector(vector) for vector in vectors)
    except (KeyError, TypeError, ValueError) as error:
        raise ProviderResponseError(
            f"Bedrock's answer is not an embeddings response ({error!r})", provider_request_id=request_id
        ) from None
    headers = {name.lower(): value for name, value in (metadata.get("HTTPHeaders") or {}).items()}
    header_tokens = _positive(headers.get(INPUT_COUNT_HEADER))
    return Embeddings(
        vectors=floats,
        input_tokens=header_tokens if header_tokens is not None else body_tokens,
        provider_request_id=request_id,
    )


def combined(parts: Sequence[Embeddings]) -> Embeddings:
    """The answers of several calls as one: vectors in order, tokens summed (None if any is None),
    the first call's request id."""
    counts = [part.input_tokens for part in parts]
    return Embeddings(
        vectors=tuple(vector for part in parts for vector in part.vectors),
        input_tokens=None if None in counts else sum(count for count in counts if count is not None),
        provider_request_id=parts[0].provider_request_id if parts else None,
    )


class BedrockEmbeddingsProvider:
    """`client` speaks `bedrock-runtime` as a boto3 client does (thread-safe), in the deployment's
    region; `max_concurrency` bounds one request's calls in flight — keep it at or below the
    client's connections (`BEDROCK_POOL_CONNECTIONS`) so that none waits for a connection."""

    def __init__(self, client: Any, max_concurrency: int = 8) -> None:
        self._client = client
        self._max_concurrency = max_concurrency

    def embed(self, call: EmbeddingCall) -> Embeddings:
        with before_sending(call.deployment):
            planned = batches(call)
        if len(planned) == 1:
            return self._invoke(call, planned[0])
        return combined(self._invoke_all(call, planned))

    def _invoke(self, call: EmbeddingCall, texts: list[str]) -> Embeddings:
        with before_sending(call.deployment):
            wire = to_wire(call, texts)
        with _provider_errors():
            response = self._client.invoke_model(**wire)
        metadata = response.get("ResponseMetadata", {})
        try:
            body = response["body"].read()
        except BotoCoreError as error:
            raise ProviderResponseError(
                f"Bedrock's answer broke off ({type(error).__name__})", provider_request_id=metadata.get("RequestId")
            ) from None
        return from_wire(call, body, metadata, len(texts))

    def _invoke_all(self, call: EmbeddingCall, planned: list[list[str]]) -> list[Embeddings]:
        with ThreadPoolExecutor(max_workers=min(self._max_concurrency, len(planned))) as pool:
            futures = [pool.submit(self._invoke, call, texts) for texts in planned]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                future.cancel()
        # Leaving the pool waited for the calls in flight: each future is now done or cancelled.
        ran = [future for future in futures if not future.cancelled()]
        failures = [error for error in map(Future.exception, ran) if error is not None]
        if failures:
            error = failures[0]
            if isinstance(error, ProviderError) and len(failures) < len(ran):
                error.accepted = True  # Bedrock bills the calls that succeeded
            raise error
        return [future.result() for future in futures]


def _family(call: EmbeddingCall) -> Family:
    family = family_of(call.deployment.model)
    if family is None:
        known = ", ".join(prefix for prefix, _ in _FAMILIES)
        raise ProviderError(
            f"paymaster cannot embed with Bedrock model `{call.deployment.model}`; it knows {known} (and their "
            "inference profiles)"
        )
    return family


def _vector(vector: object) -> tuple[float, ...]:
    if not isinstance(vector, list) or not vector:
        raise ValueError("a vector is not a non-empty list of numbers")
    return tuple(float(number) for number in vector)


def _positive(value: object) -> int | None:
    """A token count, if `value` is a positive integer (or its decimal text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdecimal():
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None
