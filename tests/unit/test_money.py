"""Money is integers: micro-USD, exact from the policy file to the error body, rounded up once."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymaster.domain.chat import Usage
from paymaster.domain.money import ceil_div, format_usd, token_cost, usd


@pytest.mark.parametrize(
    ("written", "micro"),
    [
        ("2000", 2_000_000_000),
        ("0.000001", 1),
        ("12.5", 12_500_000),
        ("1.0000000", 1_000_000),  # trailing zeros past the sixth decimal are still exact
        (Decimal("0.012207"), 12_207),
        (3, 3_000_000),
    ],
)
def test_usd_reads_dollars_exactly_as_micro_usd(written: str | Decimal | int, micro: int) -> None:
    assert usd(written) == micro


@pytest.mark.parametrize("written", ["0.0000001", "1.0000005", "2000.0000001"])
def test_usd_with_more_than_six_decimals_is_refused(written: str) -> None:
    with pytest.raises(ValueError, match="finer than one micro-dollar"):
        usd(written)


@pytest.mark.parametrize(
    ("micro", "text"),
    [
        (12_207, "0.012207"),
        (1, "0.000001"),
        (0, "0"),
        (12_500_000, "12.5"),
        (2_000_000_000, "2000"),
        (1_800_000_001, "1800.000001"),
    ],
)
def test_format_usd_writes_the_exact_decimal(micro: int, text: str) -> None:
    assert format_usd(micro) == text


@given(st.integers(min_value=0, max_value=10**18))
def test_format_usd_round_trips_through_usd(micro: int) -> None:
    text = format_usd(micro)

    assert "E" not in text.upper()
    assert usd(text) == micro


@pytest.mark.parametrize(("numerator", "denominator", "quotient"), [(7, 2, 4), (6, 2, 3), (0, 5, 0), (1, 1_000_000, 1)])
def test_ceil_div_rounds_up(numerator: int, denominator: int, quotient: int) -> None:
    assert ceil_div(numerator, denominator) == quotient


def test_token_cost_of_the_module_docstring_example() -> None:
    # 1_234 × $3/M + 567 × $15/M = 3_702 + 8_505 = 12_207 µUSD.
    cost = token_cost(Usage(1_234, 567), input_price=3_000_000, output_price=15_000_000)

    assert cost == 12_207


def test_token_cost_rounds_up_once_per_request_not_per_part() -> None:
    # 0.15 µUSD + 0.6 µUSD = 0.75 µUSD → 1, where rounding each part would give 2.
    cost = token_cost(Usage(1, 1), input_price=150_000, output_price=600_000)

    assert cost == 1


def test_token_cost_rounds_a_fraction_of_a_micro_dollar_up() -> None:
    # 3 × 333_334 = 1_000_002 → 1.000002 µUSD → 2.
    assert token_cost(Usage(3, 0), input_price=333_334, output_price=0) == 2


def test_token_cost_of_nothing_is_zero() -> None:
    assert token_cost(Usage(0, 0), input_price=3_000_000, output_price=15_000_000) == 0


def test_cache_reads_without_a_cache_price_are_charged_at_the_input_price() -> None:
    # 1M cache-read tokens at $3/M input: $3, not $0.
    cost = token_cost(Usage(0, 0, cache_read_tokens=1_000_000), input_price=3_000_000, output_price=15_000_000)

    assert cost == 3_000_000


def test_cache_writes_without_a_cache_price_are_charged_at_the_input_price() -> None:
    cost = token_cost(Usage(0, 0, cache_write_tokens=1_000_000), input_price=3_000_000, output_price=15_000_000)

    assert cost == 3_000_000


def test_cache_tokens_use_their_own_prices_when_given() -> None:
    # 1_000 input × $0.80/M + 100 output × $4/M + 10_000 read × $0.08/M + 2_000 write × $1/M
    # = 800 + 400 + 800 + 2_000 = 4_000 µUSD.
    usage = Usage(1_000, 100, cache_read_tokens=10_000, cache_write_tokens=2_000)

    cost = token_cost(
        usage, input_price=800_000, output_price=4_000_000, cache_read_price=80_000, cache_write_price=1_000_000
    )

    assert cost == 4_000


def test_an_explicit_zero_cache_price_is_honoured() -> None:
    cost = token_cost(
        Usage(0, 0, cache_read_tokens=1_000_000), input_price=3_000_000, output_price=0, cache_read_price=0
    )

    assert cost == 0


tokens = st.integers(min_value=0, max_value=10_000_000)
prices = st.integers(min_value=0, max_value=100_000_000)
cache_prices = st.none() | prices
usages = st.builds(Usage, tokens, tokens, tokens, tokens)


def exact_cost(usage: Usage, input_price: int, output_price: int, read: int | None, write: int | None) -> Fraction:
    return Fraction(
        usage.input_tokens * input_price
        + usage.output_tokens * output_price
        + usage.cache_read_tokens * (input_price if read is None else read)
        + usage.cache_write_tokens * (input_price if write is None else write),
        1_000_000,
    )


@given(usage=usages, input_price=prices, output_price=prices, read=cache_prices, write=cache_prices)
def test_token_cost_is_the_exact_cost_rounded_up_by_less_than_one_micro_dollar(
    usage: Usage, input_price: int, output_price: int, read: int | None, write: int | None
) -> None:
    exact = exact_cost(usage, input_price, output_price, read, write)

    cost = token_cost(
        usage, input_price=input_price, output_price=output_price, cache_read_price=read, cache_write_price=write
    )

    assert exact <= cost < exact + 1


@given(
    usage=usages,
    field=st.sampled_from(["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"]),
    more=st.integers(min_value=1, max_value=1_000_000),
    input_price=prices,
    output_price=prices,
    read=cache_prices,
    write=cache_prices,
)
def test_token_cost_never_falls_when_any_token_count_grows(
    usage: Usage, field: str, more: int, input_price: int, output_price: int, read: int | None, write: int | None
) -> None:
    counts = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
    }
    counts[field] += more
    bigger = Usage(**counts)

    def cost(of: Usage) -> int:
        return token_cost(
            of, input_price=input_price, output_price=output_price, cache_read_price=read, cache_write_price=write
        )

    assert cost(bigger) >= cost(usage)
