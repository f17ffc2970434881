"""The interfaces the use cases need. Adapters implement them; only the composition root
(`paymaster.composition`) chooses which."""

from collections.abc import Generator
from dataclasses import dataclass
from typing import Protocol

from paymaster.domain.chat import ChatRequest, Completion, StreamEvent
from paymaster.domain.policy import Deployment


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """One call to one deployment: the caller's request with the output limit the gateway set."""

    request: ChatRequest
    deployment: Deployment
    max_output_tokens: int


class ChatProvider(Protocol):
    """One provider kind (OpenAI-compatible, Bedrock, ...), translating to and from its wire."""

    def complete(self, call: ProviderCall) -> Completion: ...

    def stream(self, call: ProviderCall) -> Generator[StreamEvent, None, None]:
        """Yields deltas, then Finished, then UsageReported when the provider reports usage.

        Closing the iterator early (client gone) must close the provider connection.
        """
        ...


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What an authenticator may look at: the request exactly as it arrived."""

    method: str
    url: str  # scheme://host/path?query, as sent (percent-encoding untouched)
    headers: dict[str, str]  # lower-cased names
    body: bytes


class Authenticator(Protocol):
    """Finds the IAM principal behind a request; raises AuthenticationError if it cannot."""

    def principal_arn(self, request: HttpRequest) -> str: ...
