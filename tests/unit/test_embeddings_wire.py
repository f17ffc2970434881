"""The embeddings answer in OpenAI's wire format, as the official openai SDK reads it."""

import json
import struct

import httpx
from hypothesis import given
from hypothesis import strategies as st
from openai import OpenAI
from openai.types import CreateEmbeddingResponse

from paymaster.api.embeddings_wire import embeddings_body
from paymaster.domain.embeddings import Embeddings

EMBEDDINGS = Embeddings(vectors=((0.5, -0.25, 1.0), (0.125, 0.0, -2.0)), input_tokens=6, provider_request_id="r")


def sdk_client(embeddings: Embeddings, usage_tokens: int, sent: list[dict[str, object]]) -> OpenAI:
    """An openai client whose server renders `embeddings` in whatever format the SDK asks for."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        return httpx.Response(
            200, json=embeddings_body(body["model"], embeddings, body.get("encoding_format", "float"), usage_tokens)
        )

    return OpenAI(
        api_key="x", base_url="http://gateway/v1", http_client=httpx.Client(transport=httpx.MockTransport(answer))
    )


def test_the_float_body_validates_as_a_create_embedding_response() -> None:
    parsed = CreateEmbeddingResponse.model_validate(embeddings_body("embed-small", EMBEDDINGS, "float", 6))

    assert (parsed.object, parsed.model) == ("list", "embed-small")
    assert [(item.object, item.index) for item in parsed.data] == [("embedding", 0), ("embedding", 1)]
    assert (parsed.usage.prompt_tokens, parsed.usage.total_tokens) == (6, 6)


def test_the_base64_body_differs_only_in_its_vectors() -> None:
    as_floats = embeddings_body("embed-small", EMBEDDINGS, "float", 6)
    as_base64 = embeddings_body("embed-small", EMBEDDINGS, "base64", 6)

    assert all(isinstance(item["embedding"], str) for item in as_base64["data"])
    for item in (*as_floats["data"], *as_base64["data"]):
        item["embedding"] = None
    assert as_base64 == as_floats


def test_floats_are_json_numbers() -> None:
    body = embeddings_body("embed-small", EMBEDDINGS, "float", 6)

    assert [item["embedding"] for item in body["data"]] == [[0.5, -0.25, 1.0], [0.125, 0.0, -2.0]]


def test_the_sdk_default_asks_for_base64_and_decodes_the_same_floats() -> None:
    sent: list[dict[str, object]] = []

    response = sdk_client(EMBEDDINGS, 6, sent).embeddings.create(model="embed-small", input=["a", "b"])

    assert sent[0]["encoding_format"] == "base64"
    assert [item.embedding for item in response.data] == [list(vector) for vector in EMBEDDINGS.vectors]


def test_the_sdk_asking_for_floats_gets_them_as_numbers() -> None:
    sent: list[dict[str, object]] = []

    response = sdk_client(EMBEDDINGS, 6, sent).embeddings.create(
        model="embed-small", input="a", encoding_format="float"
    )

    assert sent[0]["encoding_format"] == "float"
    assert response.data[1].embedding == [0.125, 0.0, -2.0]


float32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@given(vector=st.lists(float32, min_size=1, max_size=64))
def test_base64_round_trips_every_float32_exactly(vector: list[float]) -> None:
    embeddings = Embeddings(vectors=(tuple(vector),), input_tokens=1)
    sent: list[dict[str, object]] = []

    response = sdk_client(embeddings, 1, sent).embeddings.create(model="m", input="a")

    assert response.data[0].embedding == vector


def test_base64_of_a_double_is_its_nearest_float32() -> None:
    sent: list[dict[str, object]] = []

    response = sdk_client(Embeddings(vectors=((0.1,),), input_tokens=1), 1, sent).embeddings.create(
        model="m", input="a"
    )

    assert response.data[0].embedding == [struct.unpack("<f", struct.pack("<f", 0.1))[0]]
