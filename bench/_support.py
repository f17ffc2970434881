"""Shared by the bench scripts: a serialised moto DynamoDB in a thread, and a policy with N rules."""

import platform
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from threading import Thread
from typing import Any

import boto3
import httpx

from paymaster.domain.policy import Policy
from paymaster_local.aws import make_moto_server
from paymaster_local.resources import create_resources
from paymaster_local.stack import free_port
from tests.policies import policy_with

RULE_SHAPES: list[dict[str, Any]] = [
    {"unit": "cost_per_month", "limit": 2000, "per": ["team"]},
    {"unit": "requests_per_minute", "limit": 100_000, "per": ["team"]},
    {"unit": "tokens_per_minute", "limit": 100_000_000, "per": ["team"]},
    {"unit": "tokens_per_day", "limit": 100_000_000, "per": ["team", "user"]},
    {"unit": "cost_per_day", "limit": 500, "per": ["team", "app"]},
    {"unit": "requests_per_day", "limit": 10_000_000, "per": ["team", "model"]},
]


def policy_with_rules(count: int) -> Policy:
    return policy_with([{"name": f"rule-{i}", **shape} for i, shape in enumerate(RULE_SHAPES[:count])])


def local_client(url: str, service: str) -> Any:
    """A boto3 client of `service` on the local AWS stand-in at `url`."""
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local"
    )


def dynamodb_client(url: str) -> Any:
    return local_client(url, "dynamodb")


@contextmanager
def moto_dynamodb() -> Iterator[str]:
    """The URL of a fresh serialised moto server with the local stack's tables."""
    port = free_port()
    server = make_moto_server("127.0.0.1", port)
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    httpx.post(f"{url}/moto-api/reset").raise_for_status()  # moto's state is per process
    create_resources(url, policy_with([]))
    try:
        yield url
    finally:
        server.shutdown()


def machine() -> str:
    cpu = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return f"{platform.machine()}, {cpu} cores, Python {platform.python_version()}; {reference_loop()}"


def reference_loop() -> str:
    """The CPU time of a fixed pure-Python loop, so figures from runs on this machine can be read
    against its speed at the time: on this VM the same loop has taken 0.20 to 0.48 s of CPU
    within one hour."""
    return f"reference loop {reference_seconds():.2f} s CPU (0.20 s at the fastest seen here)"


def reference_seconds() -> float:
    started = time.process_time()
    total = 0
    for number in range(10_000_000):
        total += number
    return time.process_time() - started
