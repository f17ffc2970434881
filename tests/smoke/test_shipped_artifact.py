"""`make smoke` as a test: the artifact `cdk deploy` would ship, built for this machine, laid out as
Lambda lays it out and started with its template's environment against the local stand-ins.

One run per module (synth, a cached deps layer, the stand-ins: about 30 s); `pytest -m smoke`
selects it, `pytest -m "not smoke"` leaves it out.
"""

import pytest

import smoke

pytestmark = pytest.mark.smoke

GATEWAY_CHECKS = {
    "GET /healthz",
    "POST /v1/chat/completions",
    "POST /v1/chat/completions stream",
    "POST /v1/chat/completions as an unknown role",
}


@pytest.fixture(scope="module")
def report() -> smoke.SmokeReport:
    return smoke.run_smoke(out=lambda _: None)


def failures(report: smoke.SmokeReport, function: str | None = None) -> list[str]:
    return [
        f"{outcome.function}: {outcome.check}: {outcome.detail}"
        for outcome in report.failed
        if function is None or outcome.function == function
    ]


def test_every_function_folder_ships_as_a_function_of_the_template(report: smoke.SmokeReport) -> None:
    folders = {path.name for path in smoke.FUNCTIONS_DIR.iterdir() if path.is_dir()}
    assert {function.name for function in report.functions} == folders


def test_the_gateway_boots_from_its_layers_and_answers_what_the_web_adapter_sends(report: smoke.SmokeReport) -> None:
    checks = {outcome.check for outcome in report.outcomes if outcome.function == "gateway"}
    assert checks >= GATEWAY_CHECKS
    assert failures(report, "gateway") == []
    assert report.cold_start_s is not None


def test_every_event_function_handles_its_sample_event_from_its_laid_out_code(report: smoke.SmokeReport) -> None:
    for function in report.functions:
        if function.is_web_app:
            continue
        invoked = [outcome for outcome in report.outcomes if outcome.function == function.label]
        assert any(outcome.check.startswith(function.handler) for outcome in invoked), function.label
        assert failures(report, function.label) == []


def test_every_function_with_its_layers_fits_lambdas_unzipped_limit(report: smoke.SmokeReport) -> None:
    assert set(report.sizes) == {function.label for function in report.functions}
    assert max(report.sizes.values()) <= smoke.LAMBDA_UNZIPPED_LIMIT_BYTES


def test_no_check_of_the_smoke_failed(report: smoke.SmokeReport) -> None:
    assert failures(report) == []
