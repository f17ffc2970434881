"""Starts the whole local stack and stops every process it started.

    moto (AWS stand-in, DynamoDB serialised)   127.0.0.1:<free port>
    fake providers (OpenAI + Bedrock runtime)  127.0.0.1:<free port>
    gateway (uvicorn, SigV4-verified)          127.0.0.1:<port>, default 8787
    runner (the event-driven functions)        polls the settlement queue for settlement_retry, the
                                               denials queue and the counters' stream for the ledger,
                                               which publishes its events on the local bus; fires
                                               every schedule of the CDK app on its timer
                                               (`timers.py`; `clock_speed` speeds the report ones)

While it runs, `<state dir>/stack.json` (`RunningStack`) says where it is, for a second shell
(`paymaster local tick`).

Each is a child process that dies with its parent (Linux parent-death signal), so an
interrupted test run or a Ctrl-C leaves nothing behind.
"""

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx

from paymaster import names
from paymaster.adapters.policy_file import load_policy
from paymaster_local.credentials import LocalCredentialFiles, write_local_credentials
from paymaster_local.mail import empty_mailbox
from paymaster_local.real_endpoints import RealEndpoint, RealEndpointChoice, resolve, store_api_keys
from paymaster_local.resources import ENV_MAIL_DIR, create_resources
from paymaster_local.timers import ScheduleClock

DEFAULT_PORT = 8787
DEFAULT_STATE_DIR = Path(".paymaster/local")
STARTUP_TIMEOUT_S = 60.0
# The stand-in runs one DynamoDB request at a time, so under load (or on a busy machine) its
# answers queue behind each other: the gateway waits as long as that queue can honestly take.
LOCAL_STORE_TIMEOUT_S = 30.0
# The server stack the gateway Lambda runs (functions/gateway/run.sh), named so that no package
# installed beside it changes it: asyncio and h11 (docs/BENCHMARKS.md §5 says why).
GATEWAY_SERVER_FLAGS = ("--loop", "asyncio", "--http", "h11")


@dataclass(frozen=True, slots=True)
class LocalStack:
    url: str  # the gateway, e.g. http://127.0.0.1:8787
    aws_url: str  # moto
    providers_url: str  # the fake providers
    credentials: LocalCredentialFiles
    policy_file: Path
    state_dir: Path
    real_endpoints: tuple[RealEndpoint, ...] = ()  # providers sent to their policy's base_url
    pids: dict[str, int] = field(default_factory=dict)  # aws, providers, gateway, runner
    events_queue_url: str = ""  # every paymaster event, as the bus's rule delivers it
    clock: ScheduleClock | None = None  # the schedules' clock

    @property
    def mail_dir(self) -> Path:
        """Every email a team's subscribers would have received since this stack started, as `.eml`
        files (`mail.py`): emptied when a stack starts."""
        return self.state_dir / "mail"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@contextmanager
def _process(args: list[str], env: dict[str, str], log: IO[bytes] | None) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT if log else None,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, safe before exec
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(name: str, url: str, process: subprocess.Popen[bytes], log_path: Path | None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text()[-2000:] if log_path and log_path.exists() else "(see the output above)"
            raise RuntimeError(f"{name} exited with {process.returncode} while starting:\n{tail}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer at {url} within {STARTUP_TIMEOUT_S:.0f} s")


@contextmanager
def local_stack(
    policy_file: Path,
    *,
    port: int = DEFAULT_PORT,
    state_dir: Path = DEFAULT_STATE_DIR,
    gateway_output: IO[bytes] | None = None,
    unclaimed_principals: dict[str, str] | None = None,
    real_endpoints: Sequence[RealEndpointChoice] = (),
    gateway_environment: Mapping[str, str] | None = None,
    clock_speed: float = 1.0,
) -> Iterator[LocalStack]:
    """Starts moto, the fake providers and the gateway; yields when all three answer.

    `clock_speed` N runs the report schedules' clock N times faster than the real one from now
    (`paymaster_local.timers`).

    `gateway_environment` is added to the gateway's environment last (a benchmark pointing it at
    another DynamoDB endpoint with `AWS_ENDPOINT_URL_DYNAMODB`, say).

    `unclaimed_principals` (profile name → IAM ARN) get credentials too although no team claims
    them, to show what the gateway answers a valid signature from a stranger. The providers of
    `real_endpoints` go to their policy's `base_url`, every other one to the fakes; a choice the
    policy or the environment cannot satisfy raises RealEndpointError before anything starts.
    """
    policy = load_policy(policy_file)
    real = resolve(policy, real_endpoints, os.environ)
    clock = ScheduleClock(datetime.now(UTC), clock_speed)
    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    empty_mailbox(state_dir / "mail")
    aws_port, providers_port = free_port(), free_port()
    aws_url, providers_url = f"http://127.0.0.1:{aws_port}", f"http://127.0.0.1:{providers_port}"
    url = f"http://127.0.0.1:{port}"
    base_env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "PAYMASTER_"))} | {
        "PYTHONUNBUFFERED": "1"
    }

    with ExitStack() as stack:
        aws_log = stack.enter_context((logs / "aws.log").open("wb"))
        aws = stack.enter_context(_process(["-m", "paymaster_local.aws", "--port", str(aws_port)], base_env, aws_log))
        providers_log = stack.enter_context((logs / "providers.log").open("wb"))
        providers = stack.enter_context(
            _process(
                ["-m", "paymaster_local.fakes", "--port", str(providers_port)],
                base_env,
                providers_log,
            )
        )
        _wait_until_up("moto", aws_url + "/moto-api/", aws, logs / "aws.log")
        tables = create_resources(aws_url, policy)
        store_api_keys(aws_url, real)
        credentials = write_local_credentials(policy, state_dir, unclaimed_principals or {})
        _wait_until_up("fake providers", providers_url + "/healthz", providers, logs / "providers.log")

        endpoints = {
            # OpenAI's base URL includes /v1; Anthropic's adapter and boto3 add their own paths.
            name: providers_url + ("/v1" if provider.kind == "openai" else "")
            for name, provider in policy.providers.items()
            if name not in {endpoint.provider for endpoint in real}
        }
        functions_env = (
            tables
            | {
                "AWS_ENDPOINT_URL": aws_url,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_REGION": names.LOCAL_REGION,
                "AWS_EC2_METADATA_DISABLED": "true",
                "POWERTOOLS_SERVICE_NAME": "paymaster",
                names.ENV_POLICY_FILE: str(policy_file.resolve()),
                names.ENV_IDENTITY: "sigv4",
                names.ENV_LOCAL_PRINCIPALS: str(credentials.principals.resolve()),
                names.ENV_PROVIDER_ENDPOINTS: json.dumps(endpoints),
                names.ENV_STORE_TIMEOUT_S: str(LOCAL_STORE_TIMEOUT_S),
                ENV_MAIL_DIR: str((state_dir / "mail").resolve()),
            }
            | clock.environ()
        )
        gateway_env = base_env | functions_env | dict(gateway_environment or {})
        gateway_args = [
            "-m", "uvicorn", "--factory", "paymaster.composition:gateway_app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log", *GATEWAY_SERVER_FLAGS,
        ]  # fmt: skip
        gateway = stack.enter_context(_process(gateway_args, gateway_env, gateway_output))
        runner_log = stack.enter_context((logs / "runner.log").open("wb"))
        runner = stack.enter_context(_process(["-m", "paymaster_local.runner"], gateway_env, runner_log))
        _wait_until_up("gateway", url + "/healthz", gateway, None)
        stack.enter_context(RunningStack(aws_url, url, policy_file.resolve(), functions_env).written(state_dir))
        yield LocalStack(
            url=url,
            aws_url=aws_url,
            providers_url=providers_url,
            credentials=credentials,
            policy_file=policy_file,
            state_dir=state_dir,
            real_endpoints=real,
            pids={"aws": aws.pid, "providers": providers.pid, "gateway": gateway.pid, "runner": runner.pid},
            events_queue_url=tables[names.ENV_EVENTS_QUEUE_URL],
            clock=clock,
        )


STACK_FILE = "stack.json"


class NoRunningStackError(Exception):
    """No local stack runs under the state directory given."""


@dataclass(frozen=True, slots=True)
class RunningStack:
    """What a second shell needs to act on a running local stack: where moto and the gateway
    answer, its policy, and the environment its functions run with (tables, queues, topics, the
    schedules' clock). Written to `<state dir>/stack.json` once everything answers, removed when
    the stack stops."""

    aws_url: str
    url: str
    policy_file: Path
    environment: dict[str, str]

    @contextmanager
    def written(self, state_dir: Path) -> Iterator[Path]:
        path = state_dir / STACK_FILE
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps({**asdict(self), "policy_file": str(self.policy_file)}, indent=2))
        partial.rename(path)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    @classmethod
    def read(cls, state_dir: Path) -> "RunningStack":
        """The stack running under `state_dir`; NoRunningStackError when none is, or it stopped
        without removing its file (killed)."""
        path = state_dir / STACK_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise NoRunningStackError(f"no local stack is running under {state_dir} (no {path}): `make run`") from None
        running = cls(raw["aws_url"], raw["url"], Path(raw["policy_file"]), raw["environment"])
        try:
            httpx.get(running.aws_url + "/moto-api/", timeout=2.0)
        except httpx.TransportError:
            raise NoRunningStackError(
                f"the local stack of {path} does not answer at {running.aws_url}: it was stopped; `make run`"
            ) from None
        return running
