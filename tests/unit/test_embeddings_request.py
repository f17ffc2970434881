"""The embeddings request: OpenAI's body shapes, what is refused, and the input-token upper bound.

The counter here is a word count, so every number can be checked by eye.
"""

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from paymaster.domain.embeddings import MAX_INPUTS, EmbeddingRequest, input_tokens
from paymaster.domain.errors import InvalidRequestError


def words(text: str) -> int:
    return len(text.split())


def request(input: Any, **fields: Any) -> EmbeddingRequest:
    return EmbeddingRequest.model_validate({"model": "embed", "input": input} | fields)


@pytest.mark.parametrize(
    ("body_input", "inputs"),
    [
        ("hello world", ["hello world"]),
        (["a", "b c"], ["a", "b c"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1, 2], [3]], [[1, 2], [3]]),
    ],
)
def test_each_of_the_four_input_shapes_becomes_one_input_per_vector(body_input: Any, inputs: list[Any]) -> None:
    assert request(body_input).inputs == inputs


def test_defaults_ask_for_floats_at_the_model_s_own_size() -> None:
    parsed = request("hi")

    assert (parsed.encoding_format, parsed.dimensions, parsed.user) == ("float", None, None)


@pytest.mark.parametrize(
    "body_input",
    ["", [], [""], ["a", ""], [[]], [[1], []], ["a", 1], [1, "a"], [[1], "a"], [-1], [[0, -2]], [True], [1.5], 7, None],
)
def test_empty_mixed_or_malformed_input_is_refused_with_one_message(body_input: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        request(body_input)

    (error,) = raised.value.errors()
    assert error["loc"] == ("input",)


def test_at_most_2048_inputs_but_one_token_array_may_be_longer() -> None:
    assert len(request(["x"] * MAX_INPUTS).inputs) == MAX_INPUTS
    assert request(list(range(5000))).inputs == [list(range(5000))]
    with pytest.raises(ValidationError, match="at most 2048"):
        request(["x"] * (MAX_INPUTS + 1))
    with pytest.raises(ValidationError, match="at most 2048"):
        request([[1]] * (MAX_INPUTS + 1))


@pytest.mark.parametrize("fields", [{"dimensions": 0}, {"encoding_format": "int8"}, {"model": ""}])
def test_out_of_range_fields_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        request("hi", **fields)


def test_unknown_fields_are_refused_as_openai_refuses_them() -> None:
    with pytest.raises(ValidationError, match="input_type"):
        request("hi", input_type="search_query")


def test_texts_are_the_inputs_when_they_are_text() -> None:
    assert request("hi").texts == ["hi"]
    assert request(["a", "b"]).texts == ["a", "b"]
    assert request("hi").is_tokens is False


def test_token_ids_are_refused_as_text_with_a_400_naming_the_input() -> None:
    tokens = request([[1, 2], [3]], model="titan")

    assert tokens.is_tokens is True
    with pytest.raises(InvalidRequestError, match="token ids") as raised:
        _ = tokens.texts
    assert raised.value.param == "input"
    assert "`titan`" in raised.value.message


def test_token_ids_go_only_to_openai_kind_providers() -> None:
    tokens = request([1, 2, 3])

    tokens.check_provider_kind("openai")
    with pytest.raises(InvalidRequestError, match="token ids"):
        tokens.check_provider_kind("bedrock")
    request("text").check_provider_kind("bedrock")


def test_texts_are_counted_by_the_tokenizer_and_token_arrays_by_their_length() -> None:
    assert input_tokens(request(["hello world", "hi"]), words) == 3
    assert input_tokens(request([1, 2, 3]), words) == 3
    assert input_tokens(request([[1, 2], [3]]), words) == 3


def test_the_factor_scales_the_sum_and_rounds_up_once() -> None:
    # (2 + 1) × 1.3 = 3.9 → 4; rounding each input would give 3 + 2 = 5.
    assert input_tokens(request(["hello world", "hi"]), words, Decimal("1.3")) == 4


@given(
    texts=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=20),
    factor=st.decimals(min_value=1, max_value=4, places=2),
)
def test_the_estimate_is_never_below_the_count_times_the_factor(texts: list[str], factor: Decimal) -> None:
    estimate = input_tokens(request(texts), len, factor)

    exact = Decimal(sum(map(len, texts))) * factor
    assert exact <= estimate < exact + 1
