"""The input-token estimate admission reserves for: an upper bound, never a guess below.

OpenAI's chat format costs 3 tokens per message (plus 1 for a `name`) and 3 to prime the reply;
the text itself is counted by the model's tokenizer. Everything else the provider receives and
bills as input — tool definitions, `response_format`, an assistant's `tool_calls` — is counted
as its JSON, which is longer than the provider's own rendering of it. For models with another
tokenizer the count is multiplied by the model's `input_token_factor` and rounded up.

Content parts other than text (images, audio, files) are refused: their cost depends on their
size and the provider's rules, and a reservation below the real cost could pass a cap.

Example: one user message "hello world" with o200k_base → 3 + 1 (role) + 2 (text) + 3 = 9.
"""

import json
from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal
from typing import Any

from paymaster.domain.chat import ChatRequest
from paymaster.domain.errors import InvalidRequestError

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3


def input_tokens(request: ChatRequest, count: Callable[[str], int], factor: Decimal = Decimal(1)) -> int:
    total = REPLY_PRIMING_TOKENS + _json_tokens(request.model_extra, count)
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
        total += _json_tokens(message.model_extra, count)
        if message.name:
            total += TOKENS_PER_NAME + count(message.name)
    return int((Decimal(total) * factor).to_integral_value(rounding=ROUND_CEILING))


def _json_tokens(extra: dict[str, Any] | None, count: Callable[[str], int]) -> int:
    return count(json.dumps(extra, sort_keys=True, separators=(",", ":"))) if extra else 0
