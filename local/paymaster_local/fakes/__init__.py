"""Fake LLM providers that the gateway and the tests reach with real clients.

One app serves them all: OpenAI under ``/v1/chat/completions`` and ``/v1/models`` (`openai_api`),
Anthropic under ``/v1/messages`` (`anthropic_api`) and Bedrock runtime under ``/model/...``
(`bedrock_api`). What they answer is defined once, in `script`.
"""

from starlette.applications import Starlette

from paymaster_local.fakes.anthropic_api import anthropic_routes
from paymaster_local.fakes.bedrock_api import bedrock_routes
from paymaster_local.fakes.openai_api import openai_routes
from paymaster_local.fakes.script import DEFAULT_CHUNK_DELAY_S
from paymaster_local.fakes.serving import serve_in_thread

__all__ = ["create_fake_providers_app", "serve_in_thread"]


def create_fake_providers_app(chunk_delay_s: float = DEFAULT_CHUNK_DELAY_S) -> Starlette:
    """All fakes on one app; streams pause ``chunk_delay_s`` between words."""
    return Starlette(
        routes=[*openai_routes(chunk_delay_s), *anthropic_routes(chunk_delay_s), *bedrock_routes(chunk_delay_s)]
    )
