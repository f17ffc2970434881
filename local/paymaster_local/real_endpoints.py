"""`paymaster local --real-endpoint NAME[=KEY_SOURCE]`: a provider served by its policy's endpoint.

By default the local stack sends every provider to the fake providers. A provider named here keeps
the policy's `base_url` instead — a vLLM or Ollama server on the developer's machine, any other
OpenAI-compatible server, or the real OpenAI or Anthropic API — and its API key is stored in the
local Secrets Manager under the policy's `api_key_secret`, where the gateway reads it as in AWS:

    --real-endpoint ollama                          a server that takes no key (no `api_key_secret`)
    --real-endpoint openai=env:OPENAI_API_KEY       the key is that environment variable's value
    --real-endpoint anthropic=file:~/.anthropic     the key is that file's one line

Everything is checked before anything starts, and each problem is one `RealEndpointError` line.
Bedrock is refused: without a `base_url` it has no endpoint but AWS's, and the local stack never
holds AWS credentials. The key is read once and never printed: the banner names only its source.
"""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import boto3

from paymaster import names
from paymaster.domain.policy import Policy

KeySourceKind = Literal["env", "file"]
SYNTAX = "NAME[=env:VAR|file:PATH]"


class RealEndpointError(ValueError):
    """A `--real-endpoint` the local stack cannot honour; the message is one line for the terminal."""


@dataclass(frozen=True, slots=True)
class KeySource:
    kind: KeySourceKind
    location: str  # a variable name, or a path as given (`~` allowed)

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}"


@dataclass(frozen=True, slots=True)
class RealEndpointChoice:
    """What `--real-endpoint` said, before the policy is read."""

    provider: str
    key_source: KeySource | None


@dataclass(frozen=True, slots=True)
class RealEndpoint:
    """A provider the local gateway sends to its policy's `base_url`, with the key it will use."""

    provider: str
    base_url: str
    secret_name: str | None
    key_source: KeySource | None
    api_key: str | None = field(repr=False)

    def describe(self) -> str:
        """`openai → https://api.openai.com/v1 (key from env:OPENAI_API_KEY in secret paymaster/providers/openai)`."""
        key = "no key" if self.key_source is None else f"key from {self.key_source} in secret {self.secret_name}"
        return f"{self.provider} → {self.base_url} ({key})"


def parse_choice(text: str) -> RealEndpointChoice:
    """`openai=env:OPENAI_API_KEY` → provider openai, key from that variable; `ollama` → no key."""
    provider, has_source, source = text.partition("=")
    if not provider:
        raise RealEndpointError(f"{text!r} is not {SYNTAX}")
    if not has_source:
        return RealEndpointChoice(provider, None)
    kind, _, location = source.partition(":")
    if kind not in ("env", "file") or not location:
        raise RealEndpointError(
            f"{text!r}: the key source is env:VAR or file:PATH, not {source!r} (none for a server that takes no key)"
        )
    return RealEndpointChoice(provider, KeySource("env" if kind == "env" else "file", location))


def resolve(
    policy: Policy, choices: Sequence[RealEndpointChoice], environ: Mapping[str, str]
) -> tuple[RealEndpoint, ...]:
    """Each choice checked against the policy, its key read; RealEndpointError names the first problem."""
    seen: set[str] = set()
    endpoints = []
    for choice in choices:
        if choice.provider in seen:
            raise RealEndpointError(f"--real-endpoint {choice.provider} is given twice")
        seen.add(choice.provider)
        endpoints.append(_resolve_one(policy, choice, environ))
    _check_shared_secrets(endpoints)
    return tuple(endpoints)


def _resolve_one(policy: Policy, choice: RealEndpointChoice, environ: Mapping[str, str]) -> RealEndpoint:
    name, source = choice.provider, choice.key_source
    provider = policy.providers.get(name)
    if provider is None:
        raise RealEndpointError(
            f"--real-endpoint {name}: the policy has no such provider (it has {', '.join(sorted(policy.providers))})"
        )
    if provider.kind == "bedrock" or provider.base_url is None:
        raise RealEndpointError(
            f"--real-endpoint {name}: a Bedrock provider, and real Bedrock needs AWS credentials, which the local "
            "stack never uses; it stays on the fake Bedrock"
        )
    secret = provider.api_key_secret
    if secret is None and source is not None:
        raise RealEndpointError(
            f"--real-endpoint {name}={source}: the provider has no api_key_secret in the policy, so the gateway "
            f"sends it no key; drop ={source} or add api_key_secret to the provider"
        )
    if secret is not None and source is None:
        raise RealEndpointError(
            f"--real-endpoint {name}: the gateway reads its key from the secret {secret}; say where the key is, "
            f"e.g. --real-endpoint {name}=env:VAR or {name}=file:PATH"
        )
    api_key = None if source is None else _read_key(name, source, environ)
    return RealEndpoint(name, provider.base_url, secret, source, api_key)


def _read_key(provider: str, source: KeySource, environ: Mapping[str, str]) -> str:
    where = f"--real-endpoint {provider}={source}"
    if source.kind == "env":
        if source.location not in environ:
            raise RealEndpointError(f"{where}: the environment variable {source.location} is not set")
        key = environ[source.location].strip()
        if not key:
            raise RealEndpointError(f"{where}: the environment variable {source.location} is empty")
        return key
    path = Path(os.path.expanduser(source.location))
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise RealEndpointError(f"{where}: there is no file {path}") from None
    except UnicodeDecodeError:
        raise RealEndpointError(f"{where}: {path} is not a text file") from None
    except OSError as error:
        raise RealEndpointError(f"{where}: cannot read {path}: {error.strerror}") from None
    if not key:
        raise RealEndpointError(f"{where}: {path} is empty")
    if "\n" in key:
        raise RealEndpointError(f"{where}: {path} has more than one line; it should hold the key alone")
    return key


def _check_shared_secrets(endpoints: Sequence[RealEndpoint]) -> None:
    """One secret holds one key: providers sharing a secret must bring the same key."""
    first_by_secret: dict[str, RealEndpoint] = {}
    for endpoint in endpoints:
        if endpoint.secret_name is None:
            continue
        first = first_by_secret.setdefault(endpoint.secret_name, endpoint)
        if first.api_key != endpoint.api_key:
            raise RealEndpointError(
                f"--real-endpoint {first.provider} and {endpoint.provider} share the secret {endpoint.secret_name} "
                f"but bring different keys ({first.key_source}, {endpoint.key_source})"
            )


def store_api_keys(aws_url: str, endpoints: Sequence[RealEndpoint]) -> None:
    """Each real endpoint's key as the current value of its secret in the local Secrets Manager.

    `create_resources` has already created every policy secret with the fakes' key; a new value
    becomes the version the gateway's `get_secret_value` reads.
    """
    # moto accepts any credentials; these are not secrets.
    session = boto3.Session(
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106
        region_name=names.LOCAL_REGION,
    )
    secrets = session.client("secretsmanager", endpoint_url=aws_url)
    for endpoint in endpoints:
        if endpoint.secret_name is not None and endpoint.api_key is not None:
            secrets.put_secret_value(SecretId=endpoint.secret_name, SecretString=endpoint.api_key)
