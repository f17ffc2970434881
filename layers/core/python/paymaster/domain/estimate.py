"""The input-token estimate admission reserves for: an upper bound, never a guess below.

OpenAI's chat format costs 3 tokens per message (plus 1 for a `name`) and 3 to prime the reply;
the text itself is counted by the model's tokenizer. Everything else the provider receives and
bills as input — tool definitions and `tool_choice`, `response_format`, an assistant's
`tool_calls`, a tool message's `tool_call_id` — is counted as its compact JSON, which is longer
than the provider's own rendering of it; the typed tool fields and the untyped extras make one
JSON object, exactly as when all of them were extras. Offering `tools` also adds the prompt that
providers wrap them in: Anthropic bills its tool-use system prompt as input and publishes it at
up to 530 tokens (Claude 3 Opus, `auto`), so any request with tools adds
`TOOL_USE_PROMPT_TOKENS` = 600. For models with another tokenizer the count is multiplied by the
model's `input_token_factor` and rounded up.

Content parts other than text (images, audio, files) are refused: their cost depends on their
size and the provider's rules, and a reservation below the real cost could pass a cap.

Example: one user message "hello world" with o200k_base → 3 + 1 (role) + 2 (text) + 3 = 9.
"""

import json
from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal
from typing import Any

from pydantic import BaseModel

from paymaster.domain.chat import ChatRequest
from paymaster.domain.errors import InvalidRequestError

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
TOOL_USE_PROMPT_TOKENS = 600
# Typed fields the provider receives as JSON, counted with the model's extras.
_REQUEST_JSON_FIELDS = ("tools", "tool_choice", "parallel_tool_calls")
_MESSAGE_JSON_FIELDS = ("tool_calls", "tool_call_id")


def input_tokens(request: ChatRequest, count: Callable[[str], int], factor: Decimal = Decimal(1)) -> int:
    total = REPLY_PRIMING_TOKENS + _json_tokens(request, _REQUEST_JSON_FIELDS, count)
    if request.tools:
        total += TOOL_USE_PROMPT_TOKENS
    for index, message in enumerate(request.messages):
        if isinstance(message.content, list):
            for part in message.content:
                if part.get("type") != "text":
                    raise InvalidRequestError(
                        f"Content parts of type `{part.get('type')}` cannot be admitted yet: their cost has no "
                        "upper bound before the call.",
                        param=f"messages.{index}.content",
                    )
        total += TOKENS_PER_MESSAGE + count(message.role) + count(message.text())
        total += _json_tokens(message, _MESSAGE_JSON_FIELDS, count)
        if message.name:
            total += TOKENS_PER_NAME + count(message.name)
    return int((Decimal(total) * factor).to_integral_value(rounding=ROUND_CEILING))


def _json_tokens(model: BaseModel, typed: tuple[str, ...], count: Callable[[str], int]) -> int:
    """The model's extras and its `typed` JSON fields that are set, as one compact JSON object.

    Example: tools=[{"type": "function", ...}], seed=7 → count('{"seed":7,"tools":[{"function":...}]}').
    """
    fields: dict[str, Any] = {name: getattr(model, name) for name in typed if getattr(model, name) is not None}
    fields |= model.model_extra or {}
    return count(json.dumps(fields, sort_keys=True, separators=(",", ":"))) if fields else 0
