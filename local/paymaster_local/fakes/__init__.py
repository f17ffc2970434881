"""Fake LLM providers that the gateway and the tests reach with real clients.

One app serves them all: OpenAI under ``/v1/chat/completions``, ``/v1/embeddings`` and
``/v1/models`` (`openai_api`), Anthropic under ``/v1/messages`` (`anthropic_api`) and Bedrock
runtime under ``/model/...`` (`bedrock_api`). What they answer is defined once, in `script`; the
faults a test scripts for them, and the log of the calls they served, are under ``/_fake/...``
(`faults`), one store per app.

By default any non-empty API key is accepted. Given ``api_key`` (``python -m paymaster_local.fakes``
reads it from the environment variable `API_KEY_ENV`), the OpenAI and Anthropic fakes accept only
that key, as the real APIs do, so that a test can tell which key a client sent. Bedrock's fake
checks that a request is signed, never with which key.
"""

from typing import Final

from starlette.applications import Starlette

from paymaster_local.fakes.anthropic_api import anthropic_routes
from paymaster_local.fakes.bedrock_api import bedrock_routes
from paymaster_local.fakes.faults import FaultStore, fault_routes
from paymaster_local.fakes.openai_api import openai_routes
from paymaster_local.fakes.script import DEFAULT_CHUNK_DELAY_S
from paymaster_local.fakes.serving import serve_in_thread

__all__ = ["API_KEY_ENV", "create_fake_providers_app", "serve_in_thread"]

API_KEY_ENV: Final = "PAYMASTER_FAKE_API_KEY"


def create_fake_providers_app(chunk_delay_s: float = DEFAULT_CHUNK_DELAY_S, api_key: str | None = None) -> Starlette:
    """All fakes on one app, sharing a new fault store; streams pause ``chunk_delay_s`` between words;
    OpenAI and Anthropic accept only ``api_key`` when it is given, else any key."""
    faults = FaultStore()
    return Starlette(
        routes=[
            *openai_routes(faults, chunk_delay_s, api_key),
            *anthropic_routes(faults, chunk_delay_s, api_key),
            *bedrock_routes(faults, chunk_delay_s),
            *fault_routes(faults),
        ]
    )
