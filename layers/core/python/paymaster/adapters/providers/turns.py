"""Chat messages as the providers that separate the system prompt from alternating turns want them
(Bedrock Converse, Anthropic Messages): `system` and `developer` texts apart, and consecutive
messages of one role merged, because user and assistant turns must alternate."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paymaster.domain.chat import ChatRequest
from paymaster.domain.errors import InvalidRequestError


@dataclass(frozen=True, slots=True)
class Turns:
    system: list[str]
    messages: list[dict[str, Any]]  # {"role": "user"|"assistant", "content": [block, ...]}


def turns(request: ChatRequest, block: Callable[[str], dict[str, Any]], provider: str) -> Turns:
    """`block` wraps a message's text as the provider's content block."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role in ("system", "developer"):
            system.append(message.text())
            continue
        if message.role == "tool":
            raise InvalidRequestError(
                f"tool messages are not supported for {provider} deployments yet", param="messages"
            )
        if messages and messages[-1]["role"] == message.role:
            messages[-1]["content"].append(block(message.text()))
        else:
            messages.append({"role": message.role, "content": [block(message.text())]})
    return Turns(system, messages)
