"""Helpers for the entry-point tests: Lambda Web Adapter's request, a recording provider, the app.

Lambda Web Adapter forwards the event's method, path, headers and body, and puts the whole
`requestContext` in the `x-amzn-request-context` header; `as_lwa_request` does the same here.
"""

import base64
import json
from collections.abc import Generator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from paymaster import names
from paymaster.adapters.memory import MemoryLedger, MemorySettlementQueue
from paymaster.adapters.request_context import RequestContextAuthenticator
from paymaster.adapters.tokenizer import count_tokens
from paymaster.api.app import create_app
from paymaster.domain.chat import Completion, Finished, StreamEvent, TextDelta, Usage, UsageReported
from paymaster.domain.errors import ProviderError
from paymaster.domain.policy import Policy
from paymaster.ports import ChatProvider, CounterStore, MetricsSink, ProviderCall, SpendLedger
from paymaster.services.admission import AdmissionService
from paymaster.services.chat import ChatService
from paymaster.services.denials import DenialEvents
from paymaster.services.embeddings import EmbeddingsService
from paymaster.services.identify import IdentifyService
from paymaster.services.routing import Router
from paymaster.services.usage import UsageService

REPO = Path(__file__).resolve().parents[2]
EVENT = REPO / "events" / "apigateway" / "rest-chat-assumed-role.json"
POLICY = REPO / "policy" / "demo.yaml"


def as_lwa_request(event: dict[str, Any]) -> dict[str, Any]:
    body = event["body"] or ""
    content = base64.b64decode(body) if event["isBase64Encoded"] else body.encode()
    headers = {name: values[-1] for name, values in (event["multiValueHeaders"] or {}).items()}
    headers[names.HEADER_REQUEST_CONTEXT] = json.dumps(event["requestContext"])
    return {
        "method": event["httpMethod"],
        "url": event["path"],
        "params": event["multiValueQueryStringParameters"] or {},
        "headers": headers,
        "content": content,
    }


class RecordingProvider:
    """Answers like a provider and remembers what it was asked; `failure` makes it fail instead."""

    def __init__(self) -> None:
        self.calls: list[ProviderCall] = []
        self.failure: ProviderError | None = None

    def complete(self, call: ProviderCall) -> Completion:
        self.calls.append(call)
        if self.failure:
            raise self.failure
        return Completion(text="1. paymaster", finish_reason="stop", usage=Usage(21, 4))

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        self.calls.append(call)
        if self.failure:
            raise self.failure
        yield TextDelta("1. paymaster")
        yield Finished("stop")
        yield UsageReported(Usage(21, 4))


def lambda_entry(
    policy: Policy,
    store: CounterStore,
    provider: ChatProvider | Mapping[str, ChatProvider],
    *,
    one_request_at_a_time: bool = True,
    denials: DenialEvents | None = None,
    ledger: SpendLedger | None = None,
    metrics: MetricsSink | None = None,
) -> TestClient:
    """The gateway app as composed for Lambda, with `provider` behind every deployment (or each
    provider of the mapping behind its own), `denials` publishing the refusals' events,
    `ledger` (an empty one by default) holding the spend `GET /v1/usage` reports and `metrics`
    taking each request's metrics."""
    providers = provider if isinstance(provider, Mapping) else dict.fromkeys(policy.providers, provider)
    admission = AdmissionService(policy, store, count_tokens, lambda: datetime.now(UTC), MemorySettlementQueue())
    router = Router(policy, admission, denials=denials, metrics=metrics)
    app = create_app(
        identify=IdentifyService(RequestContextAuthenticator(), policy),
        chat=ChatService(policy, providers, router),
        embeddings=EmbeddingsService({}, router),
        usage=UsageService(admission, ledger or MemoryLedger(), lambda: datetime.now(UTC)),
        max_body_bytes=4 * 1024 * 1024,
        one_request_at_a_time=one_request_at_a_time,
    )
    return TestClient(app)
