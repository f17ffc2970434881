"""The embeddings transports: what they send, and each failure as the caller will see it.

OpenAI-compatible through `httpx.MockTransport`; Bedrock through the gateway's Bedrock client
(`bedrock_runtime`) against a small Bedrock-shaped server in this file (its answers: a vector
holding each text's length, the word count in the metered-token header).
"""

import contextlib
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from paymaster import composition
from paymaster.adapters.aws_environment import StaticCredentials
from paymaster.adapters.bedrock_runtime import BedrockRuntimeWire
from paymaster.adapters.policy_file import load_policy
from paymaster.adapters.providers.bedrock_embeddings import BedrockEmbeddingsProvider
from paymaster.adapters.providers.openai_embeddings import OpenAIEmbeddingsProvider
from paymaster.adapters.settings import Settings
from paymaster.composition import BEDROCK_POOL_CONNECTIONS
from paymaster.domain.embeddings import EmbeddingRequest, Embeddings
from paymaster.domain.errors import (
    InvalidRequestError,
    ProviderError,
    ProviderRejectedError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from paymaster.domain.policy import Deployment, Timeouts
from paymaster.ports import EmbeddingCall
from tests.adapters.scripted_bedrock import serve_http
from tests.policies import DEMO

TITAN_V2 = "amazon.titan-embed-text-v2:0"
COHERE_V3 = "cohere.embed-english-v3"


def call(input: Any, model: str, **fields: Any) -> EmbeddingCall:
    return EmbeddingCall(
        request=EmbeddingRequest.model_validate({"model": "virtual", "input": input} | fields),
        deployment=Deployment(provider="p", model=model),
    )


# OpenAI-compatible


class _Body(httpx.SyncByteStream):
    def __init__(self, content: bytes) -> None:
        self._content = content

    def __iter__(self) -> Iterator[bytes]:
        yield self._content


def json_response(status: int, body: object, headers: dict[str, str]) -> httpx.Response:
    """An answer still to be read, as a real transport returns it (not pre-read like `json=`)."""
    return httpx.Response(
        status, headers={"content-type": "application/json", **headers}, stream=_Body(json.dumps(body).encode())
    )


def openai(answer: Callable[[httpx.Request], httpx.Response]) -> OpenAIEmbeddingsProvider:
    return OpenAIEmbeddingsProvider(
        httpx.MockTransport(answer), "https://api.example.com/v1/", api_key=lambda: "sk-test", timeouts=Timeouts()
    )


def test_openai_request_carries_the_key_and_the_deployment_and_reads_the_usage() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        data = [{"object": "embedding", "index": i, "embedding": [float(i), 0.5]} for i in range(2)]
        body = {"object": "list", "data": data, "model": "text-embedding-3-small", "usage": {"prompt_tokens": 4}}
        return json_response(200, body, {"x-request-id": "req_1"})

    embeddings = openai(answer).embed(call([[1, 2], [3, 4]], "text-embedding-3-small"))

    (request,) = sent
    assert str(request.url) == "https://api.example.com/v1/embeddings"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert json.loads(request.content) == {
        "model": "text-embedding-3-small",
        "input": [[1, 2], [3, 4]],
        "encoding_format": "base64",
    }
    assert embeddings.vectors == ((0.0, 0.5), (1.0, 0.5))
    assert (embeddings.input_tokens, embeddings.provider_request_id) == (4, "req_1")


@pytest.mark.parametrize(
    ("status", "error"), [(400, ProviderRejectedError), (429, ProviderError), (500, ProviderError)]
)
def test_openai_error_status_keeps_the_provider_s_message_and_request_id(
    status: int, error: type[ProviderError]
) -> None:
    def answer(_: httpx.Request) -> httpx.Response:
        return json_response(status, {"error": {"message": "too long"}}, {"x-request-id": "req_9"})

    with pytest.raises(error, match="too long") as raised:
        openai(answer).embed(call("hi", "text-embedding-3-small"))

    assert (raised.value.status, raised.value.provider_request_id) == (status, "req_9")


def test_openai_timeout_is_a_timeout() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no first byte", request=request)

    with pytest.raises(ProviderTimeoutError):
        openai(slow).embed(call("hi", "text-embedding-3-small"))


def test_openai_answer_with_too_few_vectors_is_a_broken_answer() -> None:
    body = {"data": [{"index": 0, "embedding": [1.0]}], "usage": {"prompt_tokens": 2}}

    with pytest.raises(ProviderResponseError) as raised:
        openai(lambda _: json_response(200, body, {"x-request-id": "req_3"})).embed(
            call(["a", "b"], "text-embedding-3-small")
        )

    assert raised.value.provider_request_id == "req_3"


# Bedrock


@dataclass
class FakeBedrock:
    """What the server received, and how it should answer."""

    bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    barrier: threading.Barrier | None = None
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, model_id: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        texts: list[str] = body["texts"] if "texts" in body else [body["inputText"]]
        if "refuse" in texts:
            return 400, {"x-amzn-ErrorType": "ValidationException:http://internal/"}, {"message": "refused text"}
        if "slow" in texts:
            self.release.wait(timeout=5)
        words = sum(len(text.split()) for text in texts)
        headers = {} if "uncounted" in texts else {"X-Amzn-Bedrock-Input-Token-Count": str(words)}
        vectors = [[float(len(text)), 0.5] for text in texts]
        if "texts" in body:
            return (
                200,
                headers,
                {"id": "x", "embeddings": vectors, "texts": texts, "response_type": "embeddings_floats"},
            )
        return 200, headers, {"embedding": vectors[0], "inputTextTokenCount": words}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, list[FakeBedrock]]]:
    current: list[FakeBedrock] = [FakeBedrock()]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            fake = current[0]
            model_id = urllib.parse.unquote(self.path.split("/")[2])
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            with fake.lock:
                fake.bodies.append((model_id, body))
                fake.in_flight += 1
                fake.most_in_flight = max(fake.most_in_flight, fake.in_flight)
            try:
                if fake.barrier is not None:
                    fake.barrier.wait(timeout=5)
                status, headers, answer = fake.answer(model_id, body)
            finally:
                with fake.lock:
                    fake.in_flight -= 1
            payload = json.dumps(answer).encode()
            self.send_response(status)
            for name, value in {**headers, "content-type": "application/json", "x-amzn-RequestId": "rid-1"}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client that timed out
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serve_http(Handler) as url:
        yield url, current


@pytest.fixture
def fake(server: tuple[str, list[FakeBedrock]]) -> Iterator[FakeBedrock]:
    server[1][0] = fresh = FakeBedrock()
    yield fresh
    fresh.release.set()


def bedrock_client(url: str, read_timeout_s: float = 5) -> BedrockRuntimeWire:
    return BedrockRuntimeWire(
        httpx.HTTPTransport(),
        endpoint_url=url,
        region="us-east-1",
        credentials=StaticCredentials("x", "y"),
        timeout=httpx.Timeout(read_timeout_s, connect=1),
    )


@pytest.fixture
def bedrock(server: tuple[str, list[FakeBedrock]]) -> BedrockRuntimeWire:
    return bedrock_client(server[0])


def test_titan_embeds_each_text_in_its_own_call_and_sums_the_metered_tokens(fake: FakeBedrock, bedrock: Any) -> None:
    texts = [f"text number {i}" + " x" * i for i in range(10)]

    embeddings = BedrockEmbeddingsProvider(bedrock).embed(call(texts, TITAN_V2, dimensions=256))

    assert sorted(body["inputText"] for _, body in fake.bodies) == sorted(texts)
    assert {model_id for model_id, _ in fake.bodies} == {TITAN_V2}
    assert all(body["dimensions"] == 256 for _, body in fake.bodies)
    assert embeddings.vectors == tuple((float(len(text)), 0.5) for text in texts)
    assert embeddings.input_tokens == sum(len(text.split()) for text in texts)
    assert embeddings.provider_request_id == "rid-1"


def test_titan_calls_run_at_most_max_concurrency_at_a_time(fake: FakeBedrock, bedrock: Any) -> None:
    # The barrier lets calls through only four at a time, so fewer than four in flight would stall.
    fake.barrier = threading.Barrier(4)

    embeddings = BedrockEmbeddingsProvider(bedrock, max_concurrency=4).embed(call(["a"] * 8, TITAN_V2))

    assert len(embeddings.vectors) == 8
    assert fake.most_in_flight == 4


def test_cohere_embeds_96_texts_per_call_in_input_order(fake: FakeBedrock, bedrock: Any) -> None:
    texts = ["y" * (i % 7 + 1) for i in range(100)]

    embeddings = BedrockEmbeddingsProvider(bedrock).embed(call(texts, COHERE_V3))

    assert sorted(len(body["texts"]) for _, body in fake.bodies) == [4, 96]
    assert all(body["input_type"] == "search_document" for _, body in fake.bodies)
    assert embeddings.vectors == tuple((float(len(text)), 0.5) for text in texts)
    assert embeddings.input_tokens == 100


def test_a_call_without_the_token_header_leaves_the_answer_without_a_count(fake: FakeBedrock, bedrock: Any) -> None:
    embeddings = BedrockEmbeddingsProvider(bedrock).embed(call(["counted", "uncounted"], COHERE_V3))

    assert embeddings.input_tokens is None


def test_a_refused_text_is_the_caller_s_error_and_nothing_was_billed(fake: FakeBedrock, bedrock: Any) -> None:
    with pytest.raises(ProviderRejectedError, match="refused text") as raised:
        BedrockEmbeddingsProvider(bedrock).embed(call("refuse", TITAN_V2))

    assert (raised.value.status, raised.value.accepted) == (400, False)


def test_a_failure_after_other_calls_succeeded_is_marked_accepted(fake: FakeBedrock, bedrock: Any) -> None:
    # The barrier holds every call until all three are in flight, so the two others surely succeed.
    fake.barrier = threading.Barrier(3)

    with pytest.raises(ProviderRejectedError) as raised:
        BedrockEmbeddingsProvider(bedrock).embed(call(["a", "refuse", "b"], TITAN_V2))

    assert raised.value.accepted is True


def test_bedrock_timeout_is_a_timeout(fake: FakeBedrock, server: tuple[str, list[FakeBedrock]]) -> None:
    client = bedrock_client(server[0], read_timeout_s=0.2)

    with pytest.raises(ProviderTimeoutError):
        BedrockEmbeddingsProvider(client).embed(call("slow", TITAN_V2))


def test_token_ids_and_unoffered_dimensions_are_refused_before_any_call(fake: FakeBedrock, bedrock: Any) -> None:
    provider = BedrockEmbeddingsProvider(bedrock)

    with pytest.raises(InvalidRequestError, match="token ids"):
        provider.embed(call([1, 2, 3], TITAN_V2))
    with pytest.raises(InvalidRequestError, match="dimensions"):
        provider.embed(call("hi", TITAN_V2, dimensions=768))
    assert fake.bodies == []


def test_a_composed_bedrock_provider_holds_at_most_its_pool_s_connections(
    fake: FakeBedrock, server: tuple[str, list[FakeBedrock]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many threads embed at once, the composition's Bedrock client has at most
    BEDROCK_POOL_CONNECTIONS requests out; the others wait for a connection, then go."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    settings = Settings(
        policy_file=DEMO,
        counters_table="counters",
        settlement_queue_url="https://sqs.local/q",
        provider_endpoints={"bedrock-us-east-1": server[0]},
    )
    _, embeddings = composition.build_providers(load_policy(DEMO), settings)
    provider = embeddings["bedrock-us-east-1"]
    answered: list[Embeddings] = []
    callers = [
        threading.Thread(target=lambda: answered.append(provider.embed(call("slow", TITAN_V2))))
        for _ in range(BEDROCK_POOL_CONNECTIONS + 3)
    ]
    for caller in callers:
        caller.start()

    deadline = time.monotonic() + 5
    while fake.in_flight < BEDROCK_POOL_CONNECTIONS and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # room for a caller beyond the pool to get through, were there room for one
    held = fake.most_in_flight
    fake.release.set()
    for caller in callers:
        caller.join(timeout=5)

    assert held == BEDROCK_POOL_CONNECTIONS
    assert len(answered) == BEDROCK_POOL_CONNECTIONS + 3
