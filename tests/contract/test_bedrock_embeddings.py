"""Bedrock InvokeModel embeddings (Titan Text Embeddings v2, Cohere Embed v3): the recorded requests
and answers against `bedrock_embeddings`."""

import pytest

from paymaster.adapters.providers import bedrock_embeddings
from paymaster.adapters.providers.bedrock_embeddings import BedrockEmbeddingsProvider
from paymaster.domain.embeddings import Embeddings
from tests.contract.recordings import (
    StubBedrockRuntime,
    bedrock_model,
    boto3_answer,
    botocore_report,
    embedding_call,
    recorded_json,
)

TITAN_REQUEST = "bedrock/titan_embed_v2_request_expected.json"
TITAN_ANSWER = "bedrock/titan_embed_v2_response.json"
COHERE_REQUEST = "bedrock/cohere_embed_v3_request_expected.json"
COHERE_ANSWER = "bedrock/cohere_embed_v3_response.json"


def recorded_vectors(name: str, key: str) -> tuple[tuple[float, ...], ...]:
    body = recorded_json(name)["body"][key]
    return (tuple(body),) if key == "embedding" else tuple(tuple(vector) for vector in body)


@pytest.mark.parametrize("name", [TITAN_REQUEST, COHERE_REQUEST])
def test_invoke_model_arguments_are_the_recorded_ones_and_valid_for_botocore(name: str) -> None:
    call = embedding_call(name, "bedrock")
    expected = recorded_json(name)["provider_request"]

    assert [bedrock_embeddings.to_wire(call, texts) for texts in bedrock_embeddings.batches(call)] == [expected]
    assert botocore_report(expected, bedrock_model().operation_model("InvokeModel").input_shape) == ""


def test_titan_answer_is_one_vector_of_the_asked_dimensions_counted_by_the_header() -> None:
    call = embedding_call(TITAN_REQUEST, "bedrock")
    client = StubBedrockRuntime(answer=boto3_answer("InvokeModel", TITAN_ANSWER))

    embeddings = BedrockEmbeddingsProvider(client).embed(call)

    assert client.sent == [recorded_json(TITAN_REQUEST)["provider_request"]]
    assert embeddings == Embeddings(
        vectors=recorded_vectors(TITAN_ANSWER, "embedding"),
        input_tokens=12,
        provider_request_id="2f6a9d3c-8e1b-4a07-b5c2-d9e4f7a1c836",
    )
    assert [len(vector) for vector in embeddings.vectors] == [256]


def test_titan_answer_without_the_count_header_is_counted_by_its_body() -> None:
    answer = boto3_answer("InvokeModel", TITAN_ANSWER)
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    del headers["x-amzn-bedrock-input-token-count"]
    assert bedrock_embeddings.INPUT_COUNT_HEADER not in headers

    embeddings = BedrockEmbeddingsProvider(StubBedrockRuntime(answer=answer)).embed(
        embedding_call(TITAN_REQUEST, "bedrock")
    )

    assert embeddings.input_tokens == 12


def test_cohere_answer_is_a_vector_per_text_counted_by_the_header() -> None:
    call = embedding_call(COHERE_REQUEST, "bedrock")
    client = StubBedrockRuntime(answer=boto3_answer("InvokeModel", COHERE_ANSWER))

    embeddings = BedrockEmbeddingsProvider(client).embed(call)

    assert client.sent == [recorded_json(COHERE_REQUEST)["provider_request"]]
    assert embeddings == Embeddings(
        vectors=recorded_vectors(COHERE_ANSWER, "embeddings"),
        input_tokens=17,
        provider_request_id="c4a7e2b9-1f3d-4e6a-8b05-a9d2c6f1e374",
    )
    assert [len(vector) for vector in embeddings.vectors] == [1024, 1024]
