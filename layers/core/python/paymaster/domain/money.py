"""Money is integers: micro-USD (1 USD = 1_000_000) from prices to counters to events.

A request's cost is rounded up once, at the end: `ceil(Σ tokens × price per million / 10⁶)`.
Example: 1_234 input tokens at $3/M and 567 output tokens at $15/M
→ (1_234 × 3_000_000 + 567 × 15_000_000) / 1_000_000 = 12_207 µUSD ($0.012207).
"""

from decimal import Decimal
from typing import NewType

from paymaster.domain.chat import Usage

MicroUsd = NewType("MicroUsd", int)
MICRO_PER_USD = 1_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are per million tokens


def usd(amount: Decimal | int | str) -> MicroUsd:
    """Dollars as written in a policy file, exactly; more than 6 decimals is an error."""
    micro = Decimal(amount) * MICRO_PER_USD
    if micro != micro.to_integral_value():
        raise ValueError(f"{amount} USD is finer than one micro-dollar")
    return MicroUsd(int(micro))


def format_usd(amount: int) -> str:
    """`12_207` → `"0.012207"`: the exact decimal, for error bodies and headers."""
    return f"{Decimal(amount) / MICRO_PER_USD:f}"


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def token_cost(
    usage: Usage,
    *,
    input_price: int,
    output_price: int,
    cache_read_price: int | None = None,
    cache_write_price: int | None = None,
) -> MicroUsd:
    """The cost of `usage` at per-million prices, rounded up once.

    Cache tokens without a cache price are charged at the input price: never $0 by accident.
    """
    total = (
        usage.input_tokens * input_price
        + usage.output_tokens * output_price
        + usage.cache_read_tokens * (input_price if cache_read_price is None else cache_read_price)
        + usage.cache_write_tokens * (input_price if cache_write_price is None else cache_write_price)
    )
    return MicroUsd(ceil_div(total, TOKENS_PER_PRICE_UNIT))
