"""The deploy preflight for Lambda Web Adapter's layer: a pinned version missing in the deploy
file's region stops `make deploy` before CloudFormation would fail the gateway function."""

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from paymaster_infra import web_adapter


@pytest.fixture
def lambda_client() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("lambda", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber


def _arn(region: str) -> str:
    return f"arn:aws:lambda:{region}:753240598075:layer:LambdaAdapterLayerArm64:{web_adapter.LAYER_VERSIONS[region]}"


def test_the_pinned_layer_found_in_the_region_lets_the_deploy_go_on(lambda_client: tuple[Any, Stubber]) -> None:
    client, stubber = lambda_client
    stubber.add_response("get_layer_version_by_arn", {"Version": 30}, {"Arn": _arn("eu-west-1")})

    assert web_adapter.check_layer("eu-west-1", client) == (True, None)
    stubber.assert_no_pending_responses()


def test_a_pinned_version_the_region_does_not_have_stops_the_deploy_naming_the_arn(
    lambda_client: tuple[Any, Stubber],
) -> None:
    client, stubber = lambda_client
    stubber.add_client_error(
        "get_layer_version_by_arn", service_error_code="ResourceNotFoundException", http_status_code=404
    )

    checked, problem = web_adapter.check_layer("eu-west-1", client)

    assert checked
    assert problem is not None
    assert _arn("eu-west-1") in problem
    assert "LAYER_VERSIONS" in problem


def test_a_check_that_cannot_be_made_is_not_a_refusal(
    lambda_client: tuple[Any, Stubber],
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, stubber = lambda_client
    stubber.add_client_error(
        "get_layer_version_by_arn", service_error_code="AccessDeniedException", http_status_code=403
    )

    assert web_adapter.check_layer("eu-west-1", client) == (False, None)
    assert "could not check" in capsys.readouterr().err


def test_a_region_missing_from_the_table_stops_the_deploy_without_asking_aws(
    lambda_client: tuple[Any, Stubber],
) -> None:
    client, _ = lambda_client  # no response queued: a call would raise

    checked, problem = web_adapter.check_layer("eu-central-2", client)

    assert not checked
    assert problem is not None
    assert "no Lambda Web Adapter layer version for eu-central-2" in problem


def test_every_pinned_version_is_the_one_the_docs_name_for_commercial_regions() -> None:
    # The maintainers publish one version for every commercial region (see the table's comment);
    # a table edited for one region only should say why in that comment.
    assert set(web_adapter.LAYER_VERSIONS.values()) == {30}


def test_the_command_line_wants_check_and_a_region(capsys: pytest.CaptureFixture[str]) -> None:
    assert web_adapter.main([]) == 2
    assert web_adapter.main(["check"]) == 2
    assert "usage" in capsys.readouterr().err
