"""What a request was charged, and on what basis — echoed to the caller and kept in the ledger.

outcome        basis            charged
Reported       provider_usage   the provider's tokens at the model's prices
Delivered      delivered_text   a stream cut by the provider or the client, or a provider that
                                left usage out: the input estimate plus the output the gateway
                                received, counted with the model's tokenizer × its
                                `input_token_factor` — never above the hold, never $0
Unknown        reservation      nothing tells what the provider produced: the whole hold
NotAccepted    released         the provider refused the call: nothing
"""

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Literal

from paymaster.domain.chat import Usage

Basis = Literal["provider_usage", "delivered_text", "reservation", "released"]


@dataclass(frozen=True, slots=True)
class Reported:
    """The provider reported what the call used."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class Delivered:
    """The provider accepted the call but reported no usage; `text` is all the output (text,
    tool names and arguments) that reached the gateway — possibly nothing."""

    text: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """The provider may have accepted the call and nothing tells what it produced."""


@dataclass(frozen=True, slots=True)
class NotAccepted:
    """The provider refused the call (an error status, unreachable): it bills nothing."""


Outcome = Reported | Delivered | Unknown | NotAccepted


@dataclass(frozen=True, slots=True)
class Bill:
    usage: Usage  # the tokens charged
    cost: int  # micro-USD charged
    basis: Basis


def delivered_output_tokens(counted: int, factor: Decimal, max_output_tokens: int) -> int:
    """Output tokens to charge for text the gateway received without usage: the tokenizer's count
    scaled to an upper bound of the provider's, but never past the output limit the provider
    was given (it cannot have produced more).

    Example: 40 tokens counted, factor 1.3, limit 50 → 50 (52 capped); limit 100 → 52.
    """
    scaled = int((Decimal(counted) * factor).to_integral_value(rounding=ROUND_CEILING))
    return min(scaled, max_output_tokens)
