"""Which usage the gateway believes: a provider's report of no input for a counted prompt is an
omission, charged as missing usage — never as free input."""

from paymaster.domain.chat import Usage
from paymaster.domain.metering import Delivered, NotAccepted, Reported, Unknown, believed


def test_a_stream_reporting_no_input_for_a_counted_prompt_is_charged_what_it_delivered() -> None:
    assert believed(Reported(Usage(0, 12), delivered="Paris."), input_estimate=40) == Delivered("Paris.")


def test_an_answer_reporting_no_input_for_a_counted_prompt_is_charged_the_hold() -> None:
    assert believed(Reported(Usage(0, 12)), input_estimate=40) == Unknown()


def test_input_read_or_written_from_the_cache_is_input() -> None:
    """A prompt served wholly from the provider's cache has no uncached input tokens."""
    for usage in (Usage(0, 12, cache_read_tokens=40), Usage(0, 12, cache_write_tokens=40), Usage(1, 0)):
        assert believed(Reported(usage), input_estimate=40) == Reported(usage)


def test_outcomes_without_a_report_and_prompts_counted_empty_are_left_as_they_are() -> None:
    for outcome in (Delivered("x"), Unknown(), NotAccepted()):
        assert believed(outcome, input_estimate=40) is outcome
    assert believed(Reported(Usage(0, 3)), input_estimate=0) == Reported(Usage(0, 3))
