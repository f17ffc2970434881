import pytest
from pydantic import ValidationError

from paymaster.domain.chat import ChatRequest

MESSAGES = [{"role": "user", "content": "hi"}]


def test_more_than_one_choice_is_refused_because_it_multiplies_the_output() -> None:
    with pytest.raises(ValidationError, match="n"):
        ChatRequest.model_validate({"model": "m", "messages": MESSAGES, "n": 2})


def test_unknown_fields_are_kept_for_the_provider() -> None:
    request = ChatRequest.model_validate({"model": "m", "messages": MESSAGES, "seed": 7, "tools": []})

    assert request.model_extra == {"seed": 7, "tools": []}


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    request = ChatRequest.model_validate(
        {"model": "m", "messages": MESSAGES, "max_tokens": 100, "max_completion_tokens": 50}
    )

    assert request.output_limit == 50
