"""Local IAM: an access key per principal in the policy, as AWS profiles any client can use.

Writes, in the state directory:
- `credentials` and `config`: one profile per principal (profile name = the principal's name in
  the policy), for `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE` + `AWS_PROFILE`;
- `principals.json`: the gateway's side, access key → secret and the ARN IAM would report. For a
  role that is an assumed-role session ARN, exactly as API Gateway reports a caller in AWS.
"""

import configparser
import json
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.session

from paymaster import names
from paymaster.domain.identity import principal_key
from paymaster.domain.policy import Policy

SESSION_NAME = "paymaster-local"


@dataclass(frozen=True, slots=True)
class LocalCredentialFiles:
    credentials: Path
    config: Path
    principals: Path
    access_keys: dict[str, tuple[str, str]]  # profile → (access key id, secret)


def _access_key_id() -> str:
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def caller_arn(arn: str) -> str:
    """The ARN API Gateway reports for this principal: roles are seen as assumed-role sessions."""
    key = principal_key(arn)
    if key.kind == "role":
        return f"arn:aws:sts::{key.account}:assumed-role/{key.name}/{SESSION_NAME}"
    return arn


def write_local_credentials(
    policy: Policy, directory: Path, unclaimed: dict[str, str] | None = None
) -> LocalCredentialFiles:
    directory.mkdir(parents=True, exist_ok=True)
    credentials, config = configparser.ConfigParser(), configparser.ConfigParser()
    principals: dict[str, dict[str, str]] = {}
    access_keys: dict[str, tuple[str, str]] = {}
    profiles = {principal.name: principal.arn for principal in policy.principals()} | (unclaimed or {})
    for profile, arn in profiles.items():
        key_id, secret = _access_key_id(), secrets.token_urlsafe(30)
        credentials[profile] = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
        config[f"profile {profile}"] = {"region": names.LOCAL_REGION}
        principals[key_id] = {"secret": secret, "arn": caller_arn(arn)}
        access_keys[profile] = (key_id, secret)

    files = LocalCredentialFiles(
        credentials=directory / "credentials",
        config=directory / "config",
        principals=directory / "principals.json",
        access_keys=access_keys,
    )
    for path, parser in ((files.credentials, credentials), (files.config, config)):
        with path.open("w") as handle:
            parser.write(handle)
        path.chmod(0o600)
    files.principals.write_text(json.dumps(principals, indent=2))
    files.principals.chmod(0o600)
    return files


def session_for(files: LocalCredentialFiles, profile: str) -> boto3.Session:
    """A boto3 session for one local profile, read from the files (no environment changes),
    exactly as an app with AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE / AWS_PROFILE gets it."""
    core = botocore.session.Session()
    core.set_config_variable("credentials_file", str(files.credentials))
    core.set_config_variable("config_file", str(files.config))
    return boto3.Session(botocore_session=core, profile_name=profile)
