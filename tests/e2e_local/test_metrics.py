"""The local gateway prints each call's EMF line with its logs, as Lambda's would reach CloudWatch:
written before the answer (a stream's before its [DONE]), found again by the call's request id."""

from collections.abc import Callable

from openai import OpenAI

from paymaster_local.stack import LocalStack
from tests.emf import documents

SEARCH = "search-ranker"


def test_a_call_s_metrics_are_in_the_gateway_s_output_when_its_answer_arrives(
    stack: LocalStack, openai_for: Callable[[str], OpenAI]
) -> None:
    client = openai_for(SEARCH)
    messages = [{"role": "user", "content": "count my tokens"}]
    served = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, max_tokens=16)
    streamed = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, max_tokens=16, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(streamed.parse())

    lines = {doc["request_id"]: doc for doc in documents((stack.state_dir / "gateway.log").read_text())}
    for raw, usage in ((served, served.parse().usage), (streamed, chunks[-1].usage)):
        line = lines[raw.headers["x-request-id"]]
        assert usage is not None
        assert {key: line[key] for key in ("team", "app", "model", "env")} == {
            "team": "search",
            "app": "ranker",
            "model": "gpt-4o-mini",
            "env": "prod",
        }
        assert (line["InputTokens"], line["OutputTokens"]) == ([usage.prompt_tokens], [usage.completion_tokens])
    assert "TimeToFirstToken" in lines[streamed.headers["x-request-id"]]
    assert "TimeToFirstToken" not in lines[served.headers["x-request-id"]]
