"""The input-token estimate admission reserves for: an upper bound, never a guess below.

OpenAI's chat format costs 3 tokens per message (plus 1 for a `name`) and 3 to prime the reply;
the text itself is counted by the model's tokenizer. For models with another tokenizer the count
is multiplied by the model's `input_token_factor` and rounded up.

Example: one user message "hello world" with o200k_base → 3 + 1 (role) + 2 (text) + 3 = 9.
"""

from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal

from paymaster.domain.chat import ChatRequest

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3


def input_tokens(request: ChatRequest, count: Callable[[str], int], factor: Decimal = Decimal(1)) -> int:
    total = REPLY_PRIMING_TOKENS
    for message in request.messages:
        total += TOKENS_PER_MESSAGE + count(message.role) + count(message.text())
        if message.name:
            total += TOKENS_PER_NAME + count(message.name)
    return int((Decimal(total) * factor).to_integral_value(rounding=ROUND_CEILING))
