"""Credentials and endpoints from the environment are exactly what boto3 would use, and
everything the environment does not decide is still boto3's answer."""

import functools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.credentials import EnvProvider

from paymaster.adapters import aws_environment
from paymaster.adapters.aws_environment import (
    BEDROCK_RUNTIME,
    DYNAMODB,
    SECRETS_MANAGER,
    DeferredClient,
    Service,
    StaticCredentials,
)

STANDARD_REGIONS = boto3.session.Session().get_available_regions("dynamodb")
SERVICES = [DYNAMODB, SECRETS_MANAGER, aws_environment.EVENTS, BEDROCK_RUNTIME]
OTHER_PARTITIONS = ["cn-north-1", "cn-northwest-1", "us-gov-west-1", "us-iso-east-1", "eusc-de-east-1", "local"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No AWS setting from the machine running the tests; no session cached by an earlier test."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    aws_environment.botocore_session.cache_clear()
    yield
    aws_environment.botocore_session.cache_clear()


def boto3_endpoint(service: Service, region: str, session: Any = None) -> str:
    session = session or boto3.Session(region_name=region)
    url: str = session.client(service.client_name, region_name=region).meta.endpoint_url
    return url


@functools.cache
def plain_session() -> Any:
    """One session for the region sweep, made in the clean environment: sessions are slow to make."""
    return boto3.Session()


@pytest.mark.parametrize("token_variable", [None, "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"])
def test_lambda_s_credentials_are_read_from_the_environment_as_botocore_reads_them(
    monkeypatch: pytest.MonkeyPatch, token_variable: str | None
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    if token_variable:
        monkeypatch.setenv(token_variable, "token-from-lambda")

    ours = aws_environment.credentials("eu-central-1", os.environ)
    theirs = EnvProvider().load().get_frozen_credentials()

    assert isinstance(ours, StaticCredentials)
    assert (ours.access_key, ours.secret_key, ours.token) == (theirs.access_key, theirs.secret_key, theirs.token)


def test_expiring_environment_credentials_are_left_to_botocore_which_refreshes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", "2099-01-01T00:00:00Z")

    found = aws_environment.credentials("eu-central-1", os.environ)

    assert not isinstance(found, StaticCredentials)
    assert found.get_frozen_credentials().access_key == "ASIAEXAMPLE"


def test_credentials_not_in_the_environment_come_from_botocore_s_chain(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials_file = tmp_path / "credentials"
    credentials_file.write_text("[dev]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials_file))
    monkeypatch.setenv("AWS_PROFILE", "dev")

    found = aws_environment.credentials("eu-central-1", os.environ)

    assert found.get_frozen_credentials().access_key == "AKIDPROFILE"


def test_no_credentials_anywhere_is_an_error_at_cold_start() -> None:
    with pytest.raises(RuntimeError, match="no AWS credentials"):
        aws_environment.credentials("eu-central-1", os.environ)


def test_static_credentials_do_not_show_their_secret() -> None:
    assert "secret" not in repr(StaticCredentials("AKID", "secret", "token"))


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.client_name)
@pytest.mark.parametrize("region", STANDARD_REGIONS + OTHER_PARTITIONS)
def test_endpoint_is_the_one_boto3_resolves_in_every_region(service: Service, region: str) -> None:
    assert aws_environment.endpoint_url(service, region, os.environ) == boto3_endpoint(service, region, plain_session())


@pytest.mark.parametrize(
    "settings",
    [
        {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"},
        {"AWS_ENDPOINT_URL_EVENTBRIDGE": "http://127.0.0.1:5005"},
        {"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:5001"},
        {"AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:5002"},
        {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://127.0.0.1:5004"},
        {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:5001"},
        {"AWS_USE_FIPS_ENDPOINT": "true"},
        {"AWS_USE_DUALSTACK_ENDPOINT": "true"},
        {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"},
    ],
)
@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.client_name)
def test_endpoint_settings_in_the_environment_are_honoured_as_boto3_honours_them(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], service: Service
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)

    assert aws_environment.endpoint_url(service, "us-west-2", os.environ) == boto3_endpoint(service, "us-west-2")


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.client_name)
def test_a_config_file_s_endpoint_is_boto3_s_to_resolve(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, service: Service
) -> None:
    config = tmp_path / "config"
    config.write_text("[default]\nendpoint_url = http://127.0.0.1:5003\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:5001")

    assert aws_environment.endpoint_url(service, "us-west-2", os.environ) == boto3_endpoint(service, "us-west-2")


class CountingFactory:
    def __init__(self) -> None:
        self.built = 0

    def __call__(self) -> Any:
        self.built += 1
        return self

    def converse(self) -> str:
        return "answer"


def test_deferred_client_is_built_at_its_first_use_and_only_then() -> None:
    factory = CountingFactory()
    client = DeferredClient(factory)

    assert factory.built == 0
    assert client.converse() == "answer"
    assert client.converse() == "answer"
    assert factory.built == 1


def test_deferred_client_used_by_many_threads_at_once_is_built_once() -> None:
    factory = CountingFactory()
    client = DeferredClient(factory)
    start = threading.Barrier(16)

    def first_use() -> None:
        start.wait()
        client.converse()

    threads = [threading.Thread(target=first_use) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert factory.built == 1
