"""OpenAI Embeddings: the recorded request and answers (base64 and numbers) against `openai_embeddings`."""

import struct

from openai.types import CreateEmbeddingResponse

from paymaster.adapters.providers import openai_embeddings
from paymaster.adapters.providers.openai_embeddings import OpenAIEmbeddingsProvider
from paymaster.domain.embeddings import Embeddings
from paymaster.domain.policy import Timeouts
from tests.contract.recordings import RecordedServer, embedding_call, recorded_json

REQUEST = "openai/embeddings_request_expected.json"
CALL = embedding_call(REQUEST, "openai")
EXPECTED = recorded_json(REQUEST)["provider_request"]
REQUEST_ID = {"x-request-id": "req_0a9b8c7d6e5f40312a3b4c5d6e7f8091"}

# As JSON numbers (what a server that ignores `encoding_format` sends); base64 carries their float32.
VECTORS = (
    (
        0.437939316,
        0.4927625656,
        0.02255193517,
        -0.2599190176,
        -0.3713020086,
        0.01065267716,
        -0.3474805653,
        -0.488473475,
    ),
    (
        0.7592450976,
        -0.2152406722,
        0.1282180697,
        0.04757816717,
        0.2711878717,
        -0.4552904665,
        -0.1346859038,
        -0.2440127283,
    ),
)


def as_float32(vector: tuple[float, ...]) -> tuple[float, ...]:
    return struct.unpack(f"<{len(vector)}f", struct.pack(f"<{len(vector)}f", *vector))


def provider(server: RecordedServer) -> OpenAIEmbeddingsProvider:
    return OpenAIEmbeddingsProvider(
        server.transport(), "https://api.openai.com/v1", api_key=lambda: "sk-test", timeouts=Timeouts()
    )


def test_request_asks_for_base64_whatever_the_caller_asked_for() -> None:
    assert openai_embeddings.to_wire(CALL) == EXPECTED


def test_base64_answer_is_read_as_float32_vectors_with_the_providers_count() -> None:
    server = RecordedServer.json_body("openai/embeddings_response_base64.json", REQUEST_ID)

    embeddings = provider(server).embed(CALL)

    (request,) = server.sent
    assert str(request.url) == "https://api.openai.com/v1/embeddings"
    assert server.sent_body == EXPECTED
    assert embeddings == Embeddings(
        vectors=tuple(as_float32(vector) for vector in VECTORS),
        input_tokens=17,
        provider_request_id="req_0a9b8c7d6e5f40312a3b4c5d6e7f8091",
    )


def test_answer_in_numbers_is_read_as_sent() -> None:
    server = RecordedServer.json_body("openai/embeddings_response.json", REQUEST_ID)

    embeddings = provider(server).embed(CALL)

    assert (embeddings.vectors, embeddings.input_tokens) == (VECTORS, 17)


def test_recorded_answer_in_numbers_is_an_embeddings_list_to_the_openai_sdk() -> None:
    CreateEmbeddingResponse.model_validate(recorded_json("openai/embeddings_response.json"))
