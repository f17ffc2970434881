"""Embeddings in paymaster's own terms: what the caller asked for, what came back, what to reserve.

The request model validates OpenAI's `POST /v1/embeddings` body. Unknown fields are refused
(`extra="forbid"`), as OpenAI itself refuses them: unlike chat, nothing here would pass them on —
Bedrock's embedding bodies are rebuilt field by field — and an unknown field silently dropped
would hide a caller's mistake.

`input` is one text, a list of texts, one token array, or a list of token arrays. Token ids only
mean something to the tokenizer that made them, so only an OpenAI-kind deployment may receive
them (`TOKEN_INPUT_PROVIDER_KINDS`); any other refuses them with a 400 before admission
(`check_provider_kind`) and again in its adapter (`texts`).
"""

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from paymaster.domain.errors import InvalidRequestError

MAX_INPUTS: Final = 2048  # OpenAI's limit on the items of one request
TOKEN_INPUT_PROVIDER_KINDS: Final = frozenset({"openai"})

EncodingFormat = Literal["float", "base64"]
TokenId = Annotated[int, Field(ge=0, strict=True)]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    input: str | list[str] | list[TokenId] | list[list[TokenId]]
    encoding_format: EncodingFormat = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _one_of_the_four_shapes(cls, value: object) -> object:
        """One clear message for a wrong `input`, instead of one error per branch of the union."""
        shape = "a non-empty string, an array of them, an array of token ids, or an array of token-id arrays"
        if isinstance(value, str):
            if not value:
                raise ValueError("must not be empty")
            return value
        if not isinstance(value, list) or not value:
            raise ValueError(f"must be {shape}")
        if all(isinstance(item, str) for item in value):
            if not all(value):
                raise ValueError("must not contain empty strings")
        elif all(_is_token_id(item) for item in value):
            return value  # one token array: its length is bounded by the model's context, not MAX_INPUTS
        elif all(isinstance(item, list) for item in value):
            if not all(item and all(_is_token_id(token) for token in item) for item in value):
                raise ValueError("token-id arrays must be non-empty arrays of non-negative integers")
        else:
            raise ValueError(f"must be {shape}")
        if len(value) > MAX_INPUTS:
            raise ValueError(f"has {len(value)} items; at most {MAX_INPUTS} per request")
        return value

    @property
    def inputs(self) -> list[str] | list[list[int]]:
        """Each input on its own, in order: one per vector of the answer."""
        if isinstance(self.input, str):
            return [self.input]
        if isinstance(self.input[0], int):  # the validator let through all ints or none
            return [self.input]
        return self.input

    @property
    def is_tokens(self) -> bool:
        """True when `input` holds token ids rather than text."""
        return not isinstance(self.inputs[0], str)

    @property
    def texts(self) -> list[str]:
        """The inputs as text; InvalidRequestError when they are token ids."""
        if self.is_tokens:
            raise _token_input_refused(self.model)
        return [item for item in self.inputs if isinstance(item, str)]

    def check_provider_kind(self, provider_kind: str) -> None:
        """Refuses token-id input for a deployment whose provider cannot take it (before admission)."""
        if self.is_tokens and provider_kind not in TOKEN_INPUT_PROVIDER_KINDS:
            raise _token_input_refused(self.model)


def input_tokens(request: EmbeddingRequest, count: Callable[[str], int], factor: Decimal = Decimal(1)) -> int:
    """An upper bound of the input tokens the provider will bill.

    Each text is counted by the model's tokenizer (OpenAI bills exactly that: embeddings add no
    per-input overhead); each token array by its length. The sum is multiplied by the model's
    `input_token_factor` and rounded up once — for OpenAI models the factor is 1.

    Example: ["hello world", "hi"] with factor 1.3 → (2 + 1) × 1.3 = 3.9 → 4.
    """
    total = sum(count(item) if isinstance(item, str) else len(item) for item in request.inputs)
    return int((Decimal(total) * factor).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True, slots=True)
class Embeddings:
    """The provider's answer: one vector per input, in input order.

    `input_tokens` is the provider's own count; None when it reported none that can be trusted
    (missing, not a positive integer): the caller must then charge the whole reservation and flag
    it, never price the call at zero.
    """

    vectors: tuple[tuple[float, ...], ...]
    input_tokens: int | None
    provider_request_id: str | None = None


def _is_token_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _token_input_refused(model: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"`input` holds token ids, which only an OpenAI deployment can take; `{model}` is served by a provider "
        "with another tokenizer. Send the text instead (LangChain's OpenAIEmbeddings: "
        "check_embedding_ctx_length=False).",
        param="input",
    )
