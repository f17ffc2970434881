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
# What became of a reservation: the store's record of it, the ledger's and the events'.
SettlementOutcome = Literal["settled", "released", "charged_delivered", "charged_reservation", "expired"]


@dataclass(frozen=True, slots=True)
class Reported:
    """The provider reported what the call used; `delivered`, for a stream, is all the output
    that reached the gateway (what it is charged if the usage cannot be believed)."""

    usage: Usage
    delivered: str | None = None


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


def believed(outcome: Outcome, input_estimate: int) -> Outcome:
    """The outcome to charge: a reported usage with no input tokens of any kind for a prompt the
    gateway counted as non-empty is a provider's omission, not a free call — it is charged as
    missing usage (what a stream delivered, else the whole hold), never as $0 of input.

    Example: a stream reports Usage(0, 12) for a prompt estimated at 40 tokens and delivered
    "Paris." → Delivered("Paris."): the 40 estimated input tokens and the text's count are
    charged. The same answer non-streamed → Unknown(): the whole hold.
    """
    if not isinstance(outcome, Reported) or input_estimate == 0:
        return outcome
    usage = outcome.usage
    if usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens > 0:
        return outcome
    return Unknown() if outcome.delivered is None else Delivered(outcome.delivered)


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
