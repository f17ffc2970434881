"""AWS credentials and endpoints as boto3 would find them, without importing botocore's session
when the environment alone decides them; and clients built on their first use.

Why: boto3 and botocore's session cost a cold start 0.3–0.5 s to import when they compile from
source, as in Lambda (docs/BENCHMARKS.md, "Cold start"), and the gateway's own DynamoDB, Secrets
Manager (`aws_json`) and Bedrock (`bedrock_runtime`) clients only need credentials and an
endpoint. In Lambda both come from the environment:

    credentials  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN — what boto3's
                 first credential provider (environment variables) returns, unchanged, when
                 AWS_CREDENTIAL_EXPIRATION is not set (with it, boto3 refreshes them)
    endpoint     AWS_ENDPOINT_URL_<SERVICE>, then AWS_ENDPOINT_URL, then
                 https://<service>.<region>.amazonaws.com in AWS's standard partition

Anything else — credentials from a profile, SSO, a role or the instance, a shared config file,
FIPS or dual-stack endpoints, another partition (China, GovCloud, ISO) — is left to botocore,
as before. A test pins both to what boto3 resolves.

Each Bedrock provider's client is built when one of its deployments is first called
(`DeferredClient`): a gateway whose first request goes elsewhere resolves nothing for it.
"""

import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple, Protocol

# botocore's data/partitions.json, partition "aws": the regions whose endpoints need no rules.
STANDARD_PARTITION_REGION = re.compile(r"^(us|eu|ap|sa|ca|me|af|il|mx)\-\w+\-\d+$")
# Each of these hands an endpoint decision to boto3's rules (or a config file could).
_BOTOCORE_DECIDES = ("AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")


class FrozenCredentials(Protocol):
    @property
    def access_key(self) -> str: ...
    @property
    def secret_key(self) -> str: ...
    @property
    def token(self) -> str | None: ...


class CredentialSource(Protocol):
    """What signs a request: botocore's Credentials (refreshing or not) or `StaticCredentials`."""

    def get_frozen_credentials(self) -> FrozenCredentials: ...


@dataclass(frozen=True, slots=True)
class StaticCredentials:
    access_key: str
    secret_key: str
    token: str | None = None

    def get_frozen_credentials(self) -> "StaticCredentials":
        return self

    def __repr__(self) -> str:
        return f"StaticCredentials(access_key={self.access_key!r}, ...)"


class Service(NamedTuple):
    client_name: str  # boto3's, e.g. "secretsmanager"
    env_name: str  # AWS_ENDPOINT_URL_<env_name>, from the service id: "Secrets Manager" → SECRETS_MANAGER
    host_prefix: str  # <host_prefix>.<region>.amazonaws.com


EVENTS = Service("events", "EVENTBRIDGE", "events")
DYNAMODB = Service("dynamodb", "DYNAMODB", "dynamodb")
SECRETS_MANAGER = Service("secretsmanager", "SECRETS_MANAGER", "secretsmanager")
BEDROCK_RUNTIME = Service("bedrock-runtime", "BEDROCK_RUNTIME", "bedrock-runtime")


def credentials(region: str, environ: Mapping[str, str]) -> CredentialSource:
    """The credentials a boto3 session in `region` would use."""
    access_key = environ.get("AWS_ACCESS_KEY_ID", "")
    secret_key = environ.get("AWS_SECRET_ACCESS_KEY", "")
    if access_key and secret_key and not environ.get("AWS_CREDENTIAL_EXPIRATION"):
        # botocore's EnvProvider: the first non-empty of these is the session token.
        token = environ.get("AWS_SECURITY_TOKEN") or environ.get("AWS_SESSION_TOKEN") or None
        return StaticCredentials(access_key, secret_key, token)
    found: CredentialSource | None = botocore_session(region).get_credentials()
    if found is None:
        raise RuntimeError("no AWS credentials (the Lambda role provides them in AWS)")
    return found


def endpoint_url(service: Service, region: str, environ: Mapping[str, str]) -> str:
    """The endpoint a boto3 client for `service` in `region` would call."""
    if not _config_file_may_decide(environ):
        configured = environ.get(f"AWS_ENDPOINT_URL_{service.env_name}") or environ.get("AWS_ENDPOINT_URL")
        if configured:
            return configured
        if STANDARD_PARTITION_REGION.match(region):
            return f"https://{service.host_prefix}.{region}.amazonaws.com"
    url: str = botocore_session(region).create_client(service.client_name, region_name=region).meta.endpoint_url
    return url


def _config_file_may_decide(environ: Mapping[str, str]) -> bool:
    if any(environ.get(name) for name in _BOTOCORE_DECIDES):
        return True
    config_file = environ.get("AWS_CONFIG_FILE") or "~/.aws/config"
    return os.path.exists(os.path.expanduser(config_file))


_building = threading.Lock()


@cache
def botocore_session(region: str | None = None) -> Any:
    """botocore's session, as `boto3.Session(region_name=region)` makes it (None: boto3's default
    session, whose region comes from the environment or the config file)."""
    import botocore.session  # noqa: PLC0415 - only when a client or the chain is needed: see above

    session = botocore.session.get_session()
    if region is not None:
        session.set_config_variable("region", region)
    return session


class DeferredClient:
    """A client built by `build` when first used, once, by whichever thread comes first.

    Example: `DeferredClient(lambda: BedrockRuntimeWire(...))` resolves the endpoint and the
    credentials only at the first `.converse(...)`; a gateway whose first request goes to OpenAI
    never builds it.
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            # One lock for every deferred client: building may use botocore's session (where the
            # environment does not decide), and botocore's sessions are not thread-safe.
            with _building:
                if self._client is None:
                    self._client = self._build()
        return getattr(self._client, name)
