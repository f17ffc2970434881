"""Cold start of the gateway: process start → first answered `POST /v1/chat/completions`.

The gateway process is started exactly as Lambda Web Adapter starts it (`functions/gateway/run.sh`:
`python -m uvicorn --factory paymaster.composition:gateway_app`), with the environment the CDK app
sets (identity from the request context, one request at a time, the policy file, table names,
the tokenizer directory) and credentials in `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
`AWS_SESSION_TOKEN`, as Lambda passes them. It talks to a local AWS stand-in (serialised moto,
in this process) and the fake providers (`python -m paymaster_local.fakes`, a child process).
As the adapter does, the script polls `GET /healthz` every 10 ms until it answers, then sends
the first request: the API Gateway event's body (`events/apigateway/rest-chat-assumed-role.json`)
with its request context in `x-amzn-request-context`, for the demo policy's `search-ranker` role.

Per run and model it prints, from the moment the process was started:

    import  `python -c "import paymaster.composition"` ran to its end (a separate process)
    ready   /healthz first answered 200
    answer  the first chat completion was read whole (status 200)

the first request's own share (answer − ready), and the CPU time the gateway process used to
its first answer (less sensitive than wall time to whatever else the machine runs).
`gpt-4o-mini` is an OpenAI-compatible deployment (httpx, its key from Secrets Manager,
o200k_base); `nova-lite` a Bedrock one (the thin bedrock-runtime client over httpx, cl100k_base).
`--importtime` adds the modules `python -X importtime` finds slowest, to the first answer;
`--provider-ms` makes the fake provider answer that late (a fault the fakes script), as a real
model would: work the gateway does in the background while it waits then shows. On a shared
machine, `--wait-idle` starts each measurement once the CPUs were 90 % idle for a second.

Every process compiles its modules from source, as in Lambda, whose layers ship no `.pyc` files
(`infra/build_layers.py` installs without compiling, the assets exclude `*.pyc`, and `/opt` is
read-only, so nothing is cached between cold starts); `--bytecode` measures with a warm bytecode
cache instead. The cache is a temporary directory (`PYTHONPYCACHEPREFIX`): nothing is written
into the venv or the source tree.

    .venv/bin/python -m bench.coldstart [--runs 5] [--importtime] [--bytecode] [--provider-ms 500] [--wait-idle]
"""

import argparse
import http.client
import json
import logging
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from threading import Thread
from typing import NamedTuple

from bench._support import machine, reference_loop
from paymaster import names
from paymaster.adapters.policy_file import load_policy
from paymaster_local.aws import make_moto_server
from paymaster_local.fakes.faults import FAULTS_PATH
from paymaster_local.resources import create_resources
from paymaster_local.stack import GATEWAY_SERVER_FLAGS, free_port

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "policy" / "demo.yaml"
EVENT = REPO / "events" / "apigateway" / "rest-chat-assumed-role.json"
TIKTOKEN_DIR = REPO / "layers" / "tokenizers" / "tiktoken"
MODELS = {"gpt-4o-mini": "OpenAI-compatible", "nova-lite": "Bedrock"}
# Lambda Web Adapter's default readiness poll interval.
POLL_S = 0.01
TIMEOUT_S = 60.0


@contextmanager
def local_aws() -> Iterator[str]:
    """A serialised moto server in this process, with the tables and secrets of the demo policy."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = make_moto_server("127.0.0.1", port)
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        server.shutdown()


@contextmanager
def fake_providers(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "paymaster_local.fakes", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while _status(port, "/") is None:  # any HTTP answer: the fakes have no health route
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fake providers did not start")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _status(port: int, path: str) -> int | None:
    """The status `GET path` answers, None while nothing listens."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def gateway_env(base: dict[str, str], aws_url: str, providers_url: str, tables: dict[str, str]) -> dict[str, str]:
    """What the CDK app and Lambda give the function (`infra/paymaster_infra/gateway_function.py`),
    plus the local endpoints."""
    policy = load_policy(POLICY)
    # OpenAI's base URL includes /v1; Anthropic's adapter and boto3 add their own paths.
    endpoints = {name: providers_url + ("/v1" if p.kind == "openai" else "") for name, p in policy.providers.items()}
    return (
        base
        | tables
        | {
            "AWS_ENDPOINT_URL": aws_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "AWS_REGION": names.LOCAL_REGION,
            "AWS_DEFAULT_REGION": names.LOCAL_REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PORT": "8080",
            names.ENV_POLICY_FILE: str(POLICY),
            names.ENV_TIKTOKEN_DIR: str(TIKTOKEN_DIR),
            names.ENV_IDENTITY: "request-context",
            names.ENV_ONE_REQUEST_AT_A_TIME: "true",
            names.ENV_PROVIDER_ENDPOINTS: json.dumps(endpoints),
        }
    )


def first_request(model: str) -> tuple[bytes, dict[str, str]]:
    event = json.loads(EVENT.read_text())
    event["requestContext"]["requestId"] = str(uuid.uuid4())  # one reservation per request, as in AWS
    body = json.dumps(json.loads(event["body"]) | {"model": model}).encode()
    headers = {
        "content-type": "application/json",
        "host": event["headers"]["Host"],
        names.HEADER_REQUEST_CONTEXT: json.dumps(event["requestContext"]),
    }
    return body, headers


def time_import(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import paymaster.composition"], env=env, check=True)
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux; 10 ms resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ColdStart(NamedTuple):
    ready: float  # seconds from the process start to /healthz answering 200
    answered: float  # seconds from the process start to the first answer, read whole
    cpu: float  # CPU seconds the gateway process used until then
    log: str  # what it printed


def delay_provider(providers_url: str, model: str, seconds: float) -> None:
    """The fake provider behind `model` answers its next call `seconds` late, as a real one would."""
    deployment = load_policy(POLICY).models[model].deployments[0].model
    body = json.dumps({"model": deployment, "faults": [{"first_byte_delay_s": seconds}]})
    connection = http.client.HTTPConnection(providers_url.removeprefix("http://"), timeout=5)
    connection.request("POST", FAULTS_PATH, body=body, headers={"content-type": "application/json"})
    if connection.getresponse().status != 200:
        raise RuntimeError("the fake providers refused the delay")
    connection.close()


def cold_start(env: dict[str, str], model: str, flags: Sequence[str] = ()) -> ColdStart:
    port = free_port()
    args = [
        sys.executable, *flags, "-m", "uvicorn", "--factory", "paymaster.composition:gateway_app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", *GATEWAY_SERVER_FLAGS,
    ]  # fmt: skip
    body, headers = first_request(model)
    started = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while _status(port, "/healthz") != 200:
            if process.poll() is not None or time.perf_counter() - started > TIMEOUT_S:
                raise RuntimeError("the gateway did not become ready")
            time.sleep(POLL_S)
        ready = time.perf_counter() - started
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        connection.request("POST", "/v1/chat/completions", body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        answered = time.perf_counter() - started
        cpu = cpu_seconds(process.pid)
        connection.close()
    finally:
        process.terminate()
        log, _ = process.communicate(timeout=10)
    if response.status != 200:
        raise RuntimeError(f"{model}: the first request answered {response.status}: {answer[:300]!r}\n{log[-3000:]}")
    return ColdStart(ready, answered, cpu, log)


def slowest_imports(log: str, top: int) -> list[tuple[int, str]]:
    """`-X importtime` output → the `top` slowest imports (cumulative µs), nested ones included."""
    rows = []
    for line in log.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = line.removeprefix("import time:").split("|")
            rows.append((int(cumulative), name.rstrip()))
    return sorted(rows, reverse=True)[:top]


def keep_only_stdlib_bytecode(cache: Path) -> None:
    """Empties the bytecode cache but for the standard library's, which a Lambda runtime ships."""
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    keep = cache / stdlib.relative_to(stdlib.anchor)
    for path in sorted(cache.rglob("*"), key=lambda path: len(path.parts), reverse=True):
        if path.is_file() and not path.is_relative_to(keep):
            path.unlink()


def _cpu_ticks() -> tuple[int, int]:
    """(all, idle) jiffies of every CPU since boot (Linux /proc/stat)."""
    fields = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


def wait_until_idle(window_s: float = 1.0, idle: float = 0.9, timeout_s: float = 900.0) -> None:
    """Returns once the machine's CPUs were at least `idle` idle over `window_s`: a cold start
    measured beside someone else's work measures the neighbour too."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        total, idle_before = _cpu_ticks()
        time.sleep(window_s)
        total_after, idle_after = _cpu_ticks()
        if (idle_after - idle_before) >= idle * max(1, total_after - total):
            return
    raise RuntimeError(f"the machine was not idle once in {timeout_s:.0f} s")


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:6.0f} ms   max {max(values) * 1000:6.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--importtime", action="store_true", help="also list the slowest imports of a cold start")
    parser.add_argument("--bytecode", action="store_true", help="with every module's bytecode cached")
    parser.add_argument(
        "--provider-ms", type=int, default=0, help="the provider's first byte this late (the fakes answer at once)"
    )
    parser.add_argument(
        "--wait-idle", action="store_true", help="start each measurement once the CPUs were 90 %% idle for 1 s"
    )
    args = parser.parse_args()

    # Bytecode goes to a cache of this run's own (PYTHONPYCACHEPREFIX), never into the venv or the tree.
    cache = Path(tempfile.mkdtemp(prefix="coldstart-pycache-"))
    base = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "PAYMASTER_", "PYTHON"))}
    base["PYTHONPYCACHEPREFIX"] = str(cache)
    with local_aws() as aws_url, fake_providers(base) as providers_url:
        tables = create_resources(aws_url, load_policy(POLICY))
        env = gateway_env(base, aws_url, providers_url, tables)
        for model in MODELS:  # fills the cache with everything a first request imports, warms moto
            cold_start(env, model)
        if not args.bytecode:
            keep_only_stdlib_bytecode(cache)
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        bytecode = "every module's bytecode cached" if args.bytecode else "bytecode for the stdlib only"
        latency = f", provider answers after {args.provider_ms} ms" if args.provider_ms else ""
        idle = ", each started on idle CPUs" if args.wait_idle else ""
        runs = f"{args.runs} cold starts per model, {bytecode}{latency}{idle}, /healthz polled every 10 ms"
        print(f"machine: {machine()}; {runs}")
        settle = wait_until_idle if args.wait_idle else lambda: None
        imports = []
        for _ in range(args.runs):
            settle()
            imports.append(time_import(env))
        print(f"{'import paymaster.composition':32} {summary(imports)}")
        for model, kind in MODELS.items():
            runs = []
            for _ in range(args.runs):
                if args.provider_ms:
                    delay_provider(providers_url, model, args.provider_ms / 1000)
                settle()
                runs.append(cold_start(env, model))
            print(f"{model} ({kind})")
            print(f"  {'ready (/healthz 200)':30} {summary([run.ready for run in runs])}")
            print(f"  {'first answer':30} {summary([run.answered for run in runs])}")
            print(f"  {'first request alone':30} {summary([run.answered - run.ready for run in runs])}")
            print(f"  {'CPU used, to the first answer':30} {summary([run.cpu for run in runs])}")
        print(f"at the end: {reference_loop()}")
        if args.importtime:
            for model in MODELS:
                print(f"slowest imports of a {model} cold start, to its first answer (cumulative, nested included):")
                for micros, name in slowest_imports(cold_start(env, model, ["-X", "importtime"]).log, 25):
                    print(f"  {micros / 1000:7.1f} ms  {name}")


if __name__ == "__main__":
    main()
