"""boto3 clients on the local AWS stand-in, as tests and the local tools make them."""

from typing import Any

import boto3


def local_client(service: str, url: str) -> Any:
    """A boto3 client for `service` at the stand-in `url` (moto takes any credentials)."""
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local"
    )
