"""Pure translation between the embeddings request and each provider's wire format."""

import base64
import json
import struct
from typing import Any

import pytest

from paymaster.adapters.providers import bedrock_embeddings, openai_embeddings
from paymaster.domain.embeddings import EmbeddingRequest, Embeddings
from paymaster.domain.errors import InvalidRequestError, ProviderError, ProviderResponseError
from paymaster.domain.policy import Deployment
from paymaster.ports import EmbeddingCall

TITAN_V2 = "amazon.titan-embed-text-v2:0"
COHERE_V3 = "cohere.embed-english-v3"
COHERE_V4 = "cohere.embed-v4:0"


def call(input: Any, model: str = "text-embedding-3-small", **fields: Any) -> EmbeddingCall:
    return EmbeddingCall(
        request=EmbeddingRequest.model_validate({"model": "virtual", "input": input} | fields),
        deployment=Deployment(provider="p", model=model),
    )


def float32_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


# OpenAI-compatible


def test_openai_body_names_the_deployment_and_always_asks_for_base64() -> None:
    wire = openai_embeddings.to_wire(call(["a", "b"], encoding_format="float", dimensions=256, user="u-1"))

    assert wire == {
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
        "encoding_format": "base64",
        "dimensions": 256,
        "user": "u-1",
    }


def test_openai_body_passes_token_ids_as_given() -> None:
    assert openai_embeddings.to_wire(call([[1, 2], [3]]))["input"] == [[1, 2], [3]]
    assert openai_embeddings.to_wire(call([1, 2]))["input"] == [1, 2]


def test_openai_answer_is_read_in_index_order_from_base64_or_numbers() -> None:
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.25, -1]},
            {"object": "embedding", "index": 0, "embedding": float32_base64([0.5, -0.125])},
        ],
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }

    embeddings = openai_embeddings.from_wire(body, inputs=2, request_id="req_1")

    assert embeddings == Embeddings(vectors=((0.5, -0.125), (0.25, -1.0)), input_tokens=7, provider_request_id="req_1")


@pytest.mark.parametrize("usage", [None, {}, {"prompt_tokens": 0}, {"prompt_tokens": "7"}, {"prompt_tokens": True}])
def test_openai_answer_without_a_positive_count_has_no_count_rather_than_zero(usage: Any) -> None:
    body = {"data": [{"index": 0, "embedding": [1.0]}], "usage": usage}

    assert openai_embeddings.from_wire(body, inputs=1).input_tokens is None


@pytest.mark.parametrize(
    "data",
    [
        [],
        [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}],
        [{"index": 0, "embedding": "not base64!"}],
        [{"index": 0, "embedding": base64.b64encode(b"abc").decode()}],
        [{"index": 0, "embedding": []}],
        [{"embedding": [1.0]}],
    ],
)
def test_openai_answer_that_does_not_match_the_inputs_is_a_broken_answer(data: list[Any]) -> None:
    with pytest.raises(ProviderResponseError, match="not an embeddings list") as raised:
        openai_embeddings.from_wire({"data": data, "usage": {"prompt_tokens": 1}}, inputs=1, request_id="req_2")

    assert raised.value.accepted is True
    assert raised.value.provider_request_id == "req_2"


# Bedrock: families


@pytest.mark.parametrize(
    ("model_id", "family"),
    [
        ("amazon.titan-embed-text-v1", "titan-v1"),
        ("amazon.titan-embed-text-v2:0", "titan-v2"),
        ("cohere.embed-english-v3", "cohere-v3"),
        ("cohere.embed-multilingual-v3", "cohere-v3"),
        ("cohere.embed-v4:0", "cohere-v4"),
        ("us.cohere.embed-v4:0", "cohere-v4"),
        ("arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0", "titan-v2"),
        ("arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.cohere.embed-v4:0", "cohere-v4"),
        ("amazon.titan-embed-image-v1", None),
        ("anthropic.claude-3-haiku-20240307-v1:0", None),
    ],
)
def test_the_family_comes_from_the_model_id_profile_or_arn(model_id: str, family: str | None) -> None:
    assert bedrock_embeddings.family_of(model_id) == family


def test_an_unknown_family_is_refused_before_any_call_naming_the_known_ones() -> None:
    with pytest.raises(ProviderError, match=r"amazon\.titan-embed-image-v1.*cohere\.embed-v4") as raised:
        bedrock_embeddings.batches(call("hi", model="amazon.titan-embed-image-v1"))

    assert raised.value.accepted is False


# Bedrock: batches and bodies


def test_titan_takes_one_text_per_call() -> None:
    assert bedrock_embeddings.batches(call(["a", "b", "c"], model=TITAN_V2)) == [["a"], ["b"], ["c"]]


def test_cohere_takes_96_texts_per_call() -> None:
    texts = [f"t{i}" for i in range(200)]

    planned = bedrock_embeddings.batches(call(texts, model=COHERE_V3))

    assert [len(batch) for batch in planned] == [96, 96, 8]
    assert [text for batch in planned for text in batch] == texts


def test_bedrock_refuses_token_ids_before_any_call() -> None:
    with pytest.raises(InvalidRequestError, match="token ids"):
        bedrock_embeddings.batches(call([[1, 2]], model=TITAN_V2))


@pytest.mark.parametrize(
    ("model", "dimensions", "message"),
    [
        (TITAN_V2, 768, "256, 512, 1024"),
        ("amazon.titan-embed-text-v1", 1536, "fixed size"),
        (COHERE_V3, 1024, "fixed size"),
        (COHERE_V4, 2048, "256, 512, 1024, 1536"),
    ],
)
def test_dimensions_the_model_does_not_offer_are_a_400(model: str, dimensions: int, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as raised:
        bedrock_embeddings.batches(call("hi", model=model, dimensions=dimensions))

    assert raised.value.param == "dimensions"


def test_titan_v2_body_carries_the_text_and_dimensions() -> None:
    wire = bedrock_embeddings.to_wire(call("hi", model=TITAN_V2, dimensions=512, user="u-1"), ["hi"])

    assert {key: value for key, value in wire.items() if key != "body"} == {
        "modelId": TITAN_V2,
        "contentType": "application/json",
        "accept": "application/json",
    }
    assert json.loads(wire["body"]) == {"inputText": "hi", "dimensions": 512}


def test_cohere_v3_body_embeds_documents() -> None:
    wire = bedrock_embeddings.to_wire(call(["a", "b"], model=COHERE_V3), ["a", "b"])

    assert json.loads(wire["body"]) == {"texts": ["a", "b"], "input_type": "search_document"}


def test_cohere_v4_body_asks_for_floats_at_the_chosen_dimension() -> None:
    wire = bedrock_embeddings.to_wire(call(["a"], model=f"us.{COHERE_V4}", dimensions=256), ["a"])

    assert wire["modelId"] == f"us.{COHERE_V4}"
    assert json.loads(wire["body"]) == {
        "texts": ["a"],
        "input_type": "search_document",
        "embedding_types": ["float"],
        "output_dimension": 256,
    }


# Bedrock: answers


def metadata(tokens: str | None = None, request_id: str = "rid-1") -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if tokens is not None:
        headers["X-Amzn-Bedrock-Input-Token-Count"] = tokens
    return {"RequestId": request_id, "HTTPStatusCode": 200, "HTTPHeaders": headers}


def test_titan_answer_prefers_the_metered_header_then_the_body_count() -> None:
    body = json.dumps({"embedding": [0.5, 1], "inputTextTokenCount": 3}).encode()
    titan = call("hi", model=TITAN_V2)

    assert bedrock_embeddings.from_wire(titan, body, metadata("4"), texts=1) == Embeddings(
        vectors=((0.5, 1.0),), input_tokens=4, provider_request_id="rid-1"
    )
    assert bedrock_embeddings.from_wire(titan, body, metadata(), texts=1).input_tokens == 3


@pytest.mark.parametrize("embeddings", [[[0.5], [1.5]], {"float": [[0.5], [1.5]]}])
def test_cohere_answer_is_read_as_a_list_or_by_type(embeddings: Any) -> None:
    body = json.dumps({"id": "x", "embeddings": embeddings, "texts": ["a", "b"]}).encode()

    parsed = bedrock_embeddings.from_wire(call(["a", "b"], model=COHERE_V3), body, metadata("9"), texts=2)

    assert (parsed.vectors, parsed.input_tokens) == (((0.5,), (1.5,)), 9)


@pytest.mark.parametrize("tokens", [None, "0", "", "many"])
def test_cohere_answer_without_a_usable_header_has_no_count_rather_than_zero(tokens: str | None) -> None:
    body = json.dumps({"embeddings": [[0.5]]}).encode()

    parsed = bedrock_embeddings.from_wire(call(["a"], model=COHERE_V3), body, metadata(tokens), texts=1)

    assert parsed.input_tokens is None


@pytest.mark.parametrize(
    ("model", "texts", "body"),
    [
        (TITAN_V2, ["a"], b"not json"),
        (TITAN_V2, ["a"], b'{"inputTextTokenCount": 3}'),
        (TITAN_V2, ["a"], b'{"embedding": []}'),
        (COHERE_V3, ["a", "b"], b'{"embeddings": [[0.5]]}'),
        (COHERE_V3, ["a", "b"], b'{"embeddings": {"int8": [[1], [2]]}}'),
    ],
)
def test_a_malformed_bedrock_answer_is_a_broken_answer_the_provider_accepted(
    model: str, texts: list[str], body: bytes
) -> None:
    with pytest.raises(ProviderResponseError, match="not an embeddings response") as raised:
        bedrock_embeddings.from_wire(call(texts, model=model), body, metadata("2"), texts=len(texts))

    assert raised.value.accepted is True
    assert raised.value.provider_request_id == "rid-1"


def test_combined_answers_keep_input_order_and_sum_their_counts() -> None:
    parts = [
        Embeddings(vectors=((1.0,),), input_tokens=2, provider_request_id="a"),
        Embeddings(vectors=((2.0,), (3.0,)), input_tokens=5, provider_request_id="b"),
    ]

    assert bedrock_embeddings.combined(parts) == Embeddings(
        vectors=((1.0,), (2.0,), (3.0,)), input_tokens=7, provider_request_id="a"
    )


def test_one_call_without_a_count_leaves_the_whole_answer_without_one() -> None:
    parts = [Embeddings(vectors=((1.0,),), input_tokens=2), Embeddings(vectors=((2.0,),), input_tokens=None)]

    assert bedrock_embeddings.combined(parts).input_tokens is None
