"""The gateway as Lambda runs it prints one EMF document per request on stdout, where Lambda's
log agent picks it up; the composition root builds that from the function's environment."""

import json
from typing import Any

import pytest

from paymaster import composition, names
from paymaster.adapters.emf_metrics import EmfMetrics
from paymaster.adapters.memory import MemoryCounterStore
from paymaster.adapters.policy_file import load_policy
from paymaster.adapters.settings import Settings
from paymaster.domain.cardinality import metric_dimensions
from paymaster.ports import RequestMetrics
from tests.emf import documents
from tests.functions.gateway import POLICY, RecordingProvider, as_lwa_request, lambda_entry

REQUEST_DIMENSIONS = ["team", "app", "model", "env"]


@pytest.mark.parametrize("one_request_at_a_time", [True, False], ids=["lambda", "worker-threads"])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
def test_each_chat_request_prints_one_emf_document_on_stdout(
    capsys: pytest.CaptureFixture[str], event: dict[str, Any], stream: bool, one_request_at_a_time: bool
) -> None:
    policy = load_policy(POLICY)
    client = lambda_entry(
        policy,
        MemoryCounterStore(),
        RecordingProvider(),
        one_request_at_a_time=one_request_at_a_time,
        metrics=EmfMetrics(metric_dimensions(policy), "paymaster-test"),
    )
    event["body"] = json.dumps(json.loads(event["body"]) | {"stream": stream})
    capsys.readouterr()

    response = client.request(**as_lwa_request(event))

    assert response.status_code == 200
    (document,) = documents(capsys.readouterr().out)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "paymaster-test"
    assert directive["Dimensions"] == [REQUEST_DIMENSIONS]
    assert {name: document[name] for name in REQUEST_DIMENSIONS} == {
        "team": "search",
        "app": "ranker",
        "model": "gpt-4o-mini",
        "env": "prod",
    }
    # 21 input tokens at $0.15 and 4 output at $0.60 per million: 5.55 µUSD, rounded up.
    assert (document["InputTokens"], document["OutputTokens"], document["CostMicroUsd"]) == ([21], [4], [6])
    assert ("TimeToFirstToken" in document) is stream


def lambda_settings(**environ: str) -> Settings:
    return Settings.from_environ(
        {
            names.ENV_POLICY_FILE: str(POLICY),
            names.ENV_COUNTERS_TABLE: "counters",
            names.ENV_SETTLEMENT_QUEUE_URL: "https://sqs.eu-central-1.amazonaws.com/111111111111/settlements",
            **environ,
        }
    )


def test_the_composition_writes_metrics_to_stdout_in_the_namespace_of_its_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    settings = lambda_settings(**{names.ENV_METRICS_NAMESPACE: "paymaster-prod"})

    sink = composition.build_metrics(load_policy(POLICY), settings)
    assert sink is not None
    sink.emit(RequestMetrics("search", "ranker", "prod", "gpt-4o-mini", denied_by="search-monthly"))

    (document,) = documents(capsys.readouterr().out)
    assert {directive["Namespace"] for directive in document["_aws"]["CloudWatchMetrics"]} == {"paymaster-prod"}
    assert lambda_settings().metrics_namespace == names.METRICS_NAMESPACE == "paymaster"


def test_powertools_switch_turns_the_gateway_s_metrics_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

    assert composition.build_metrics(load_policy(POLICY), lambda_settings()) is None
