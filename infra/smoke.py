"""`make smoke`: boot the artifact `cdk deploy` ships, on this machine, without AWS or Docker.

1. The deps layer is built with `build_layers.py` for a bare interpreter of this machine (its
   version and platform instead of Lambda's), cached under `build/smoke/` by the lock's hash.
2. The app is synthesised with it (no credentials); each Lambda function of the templates is
   read back from the cloud assembly: its `Handler`, `Environment.Variables`, timeout, and the
   staged asset folders of its code and layers — the folders `cdk deploy` zips and uploads.
3. Each function is laid out as Lambda lays it out, under a temporary root: its layers unpacked
   in order into `<root>/opt` (`/opt/python`, `/opt/tiktoken`, `/opt/policy`), its code as
   `<root>/var/task`. Its environment is the template's, with `/opt/…` and `/var/task…` paths
   moved under the root and every token (table names, queue URLs) replaced by the resource the
   local stand-in holds under the same variable name (`paymaster_local.resources`); what is
   added is what Lambda itself sets (`AWS_REGION`, `LAMBDA_TASK_ROOT`, `_HANDLER`, credentials…),
   `AWS_ENDPOINT_URL` at the stand-in and the providers' endpoints at the fakes.
4. The gateway (`run.sh` behind Lambda Web Adapter) is started as the adapter starts it and
   driven as the adapter drives it: `GET /healthz` until it answers (the cold start), then a chat
   completion, a streamed one and a refusal, each with the API Gateway request context of
   `events/apigateway/rest-chat-assumed-role.json` in `x-amzn-request-context`. Every other
   function's handler is imported from its `/var/task` by a bare interpreter whose `sys.path` is
   the function's layers (`lambda_runtime.py`) and invoked with its sample event
   (`SAMPLE_EVENTS`); a function with no sample event fails the smoke.
5. It prints the cold start and each function's unzipped size (code + layers) against Lambda's
   250 MB limit, and exits 1 when any check failed.

    python infra/smoke.py        (make smoke; tests/smoke runs the same)
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import build_layers
from paymaster import names
from paymaster.adapters.policy_file import load_policy

REPO_ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = REPO_ROOT / "events"
FUNCTIONS_DIR = REPO_ROOT / "functions"
CACHE_DIR = REPO_ROOT / "build" / "smoke"
LOCK_FILE = REPO_ROOT / "uv.lock"
LAMBDA_RUNTIME = Path(__file__).resolve().parent / "lambda_runtime.py"

# Every function's sample event (under events/), by its code folder (functions/<name>). A function
# in the template without one fails the smoke: add its folder here with the event it is invoked
# with in AWS. The gateway's is the API Gateway event whose request context the smoke sends.
SAMPLE_EVENTS: Mapping[str, str] = {
    "budget_alarm": "sqs/budget-threshold-crossed.json",
    "digest": "scheduler/digest.json",
    "forecast": "scheduler/forecast.json",
    "gateway": "apigateway/rest-chat-assumed-role.json",
    "ledger": "dynamodb/counters-stream.json",
    "ledger_denials": "sqs/request-denied.json",
    "month_close": "scheduler/month-close.json",
    "settlement_retry": "sqs/settlement-retry.json",
    "sweeper": "scheduler/sweeper.json",
}

# Function code and all its layers, unzipped (AWS Lambda quotas: "Deployment package (.zip file
# archive) size: 250 MB (unzipped)", layers included).
MIB = 1024 * 1024
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * MIB
WEB_ADAPTER_WRAPPER = "/opt/bootstrap"
# Where Lambda puts what it unpacks; the template's paths under them move under the root.
LAMBDA_PATHS = ("/opt", "/var/task", "/var/runtime")
LAMBDA_PATH_IN_TEXT = re.compile(r"(?<![\w./-])(?:/opt|/var/task|/var/runtime)(?![\w.-])")
TASK_ROOT = "var/task"
# Lambda Web Adapter polls its readiness path every 10 ms.
READINESS_POLL_S = 0.01
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
# Variables that point a process at the local stand-ins: a deployed function must not have them.
LOCAL_ONLY_VARIABLES = (names.ENV_LOCAL_PRINCIPALS,)
# A role of the sample's account that no team of the demo policy claims.
STRANGER_ROLE = "not-in-the-policy"


class SmokeError(Exception):
    """The smoke could not be set up (build, synth, stand-ins); the message says what failed."""


@dataclass(frozen=True)
class ShippedFunction:
    """One Lambda function as the cloud assembly ships it."""

    stack: str
    logical_id: str
    name: str | None  # its code folder under functions/, None when it is none of them
    handler: str
    environment: Mapping[str, Any]  # the template's values, tokens included
    timeout_s: int
    memory_mb: int
    code: Path  # the staged asset folder `cdk deploy` zips
    layers: tuple[Path, ...]  # the staged folders of its own layers, in the template's order
    external_layers: tuple[str, ...]  # layers it mounts by ARN (Lambda Web Adapter)

    @property
    def label(self) -> str:
        return self.name or f"{self.stack}/{self.logical_id}"

    @property
    def is_web_app(self) -> bool:
        """Run by Lambda Web Adapter: the handler is a script the adapter starts."""
        return self.environment.get("AWS_LAMBDA_EXEC_WRAPPER") == WEB_ADAPTER_WRAPPER


@dataclass(frozen=True)
class Outcome:
    function: str
    check: str
    ok: bool
    detail: str = ""


@dataclass
class SmokeReport:
    functions: list[ShippedFunction] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    cold_start_s: float | None = None  # the gateway: process start to the first /healthz answer
    cold_start_cpu_s: float | None = None  # the CPU time the gateway process used to it (Linux)
    sizes: dict[str, int] = field(default_factory=dict)  # function → unzipped code + layers, bytes

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.ok]

    def add(self, function: str, check: str, ok: bool, detail: str = "") -> None:
        self.outcomes.append(Outcome(function, check, ok, detail))


# --- the artifact ------------------------------------------------------------------------------


def runtime_python(cache: Path) -> Path:
    """A bare interpreter of this machine's Python (a venv of the base interpreter, no packages):
    what the managed runtime is to a function, without the development environment's packages."""
    tag = f"{sys.implementation.cache_tag}-{sysconfig.get_platform()}"
    home = cache / f"runtime-{tag}"
    python = home / "bin" / "python"
    if not python.exists():
        scratch = Path(tempfile.mkdtemp(prefix="runtime-", dir=cache))
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--without-pip", str(scratch)], check=True)  # noqa: S603
        shutil.rmtree(home, ignore_errors=True)
        scratch.rename(home)
    return python


def deps_layer(cache: Path, python: Path, lock: Path = LOCK_FILE) -> Path:
    """The deps layer (a folder holding `python/`) for `python`, built by build_layers.py once per
    lock file and interpreter; uv's cache alone when it holds every wheel."""
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    layer = cache / f"deps-{python.parent.parent.name}-{digest}"
    if not (layer / "python").is_dir():
        scratch = Path(tempfile.mkdtemp(prefix="deps-", dir=cache))
        platform = build_layers.interpreter_platform(str(python))
        try:
            build_layers.build_deps_layer(scratch, build_layers.find_uv(), platform, prefer_cache=True)
        except subprocess.CalledProcessError as error:
            shutil.rmtree(scratch, ignore_errors=True)
            raise SmokeError(f"the deps layer did not build for {python}: {error}") from error
        shutil.rmtree(layer, ignore_errors=True)
        scratch.rename(layer)
    return layer


def synthesise(deps_dir: Path, outdir: Path, staging_dir: Path) -> None:
    """The app as `make synth` builds it, with the deps layer at `deps_dir`, into `outdir`."""
    # Imported here: starting jsii takes seconds, which nothing else in this module needs.
    from aws_cdk import App  # noqa: PLC0415

    from paymaster_infra.config import (  # noqa: PLC0415
        DEFAULT_POLICY_FILE,
        DEFAULT_TOKENIZERS_DIR,
        AppConfig,
    )
    from paymaster_infra.deployment import add_paymaster  # noqa: PLC0415

    config = AppConfig(
        deps_dir=deps_dir,
        policy_file=REPO_ROOT / DEFAULT_POLICY_FILE,
        tokenizers_dir=REPO_ROOT / DEFAULT_TOKENIZERS_DIR,
        staging_dir=staging_dir,
    )
    app = App(outdir=str(outdir))
    add_paymaster(app, config)
    app.synth()


def tree_digest(folder: Path) -> str:
    """The files under `folder` (paths and bytes), bytecode caches left out as the assets leave them."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_dir() or "__pycache__" in relative.parts or path.suffix == ".pyc":
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def code_folders(functions_dir: Path = FUNCTIONS_DIR) -> dict[str, str]:
    """functions/<name> by the digest of its files."""
    return {tree_digest(folder): folder.name for folder in sorted(functions_dir.iterdir()) if folder.is_dir()}


def staged_assets(outdir: Path) -> dict[str, Path]:
    """Each file asset's S3 object key → the folder synth staged for it (the assets manifests)."""
    assets: dict[str, Path] = {}
    for manifest in outdir.glob("*.assets.json"):
        for asset in json.loads(manifest.read_text()).get("files", {}).values():
            for destination in asset["destinations"].values():
                assets[destination["objectKey"]] = outdir / asset["source"]["path"]
    return assets


def shipped_functions(outdir: Path, folders: Mapping[str, str]) -> list[ShippedFunction]:
    """Every `AWS::Lambda::Function` of the assembly's templates, with its staged code and layers."""
    assets = staged_assets(outdir)
    functions = []
    for template_file in sorted(outdir.glob("*.template.json")):
        stack = template_file.name.removesuffix(".template.json")
        resources: dict[str, Any] = json.loads(template_file.read_text()).get("Resources", {})
        for logical_id, resource in resources.items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            properties = resource["Properties"]
            code = assets[properties["Code"]["S3Key"]]
            own_layers, external = [], []
            for layer in properties.get("Layers", []):
                if isinstance(layer, dict) and set(layer) == {"Ref"}:
                    own_layers.append(assets[resources[layer["Ref"]]["Properties"]["Content"]["S3Key"]])
                else:
                    external.append(json.dumps(layer))
            functions.append(
                ShippedFunction(
                    stack=stack,
                    logical_id=logical_id,
                    name=folders.get(tree_digest(code)),
                    handler=properties["Handler"],
                    environment=properties.get("Environment", {}).get("Variables", {}),
                    timeout_s=int(properties.get("Timeout", 3)),
                    memory_mb=int(properties.get("MemorySize", 128)),
                    code=code,
                    layers=tuple(own_layers),
                    external_layers=tuple(external),
                )
            )
    return functions


def _place(source: Path, target: Path) -> None:
    """Hard-link (or copy) every file of `source` into `target`; a later layer's file replaces an
    earlier one's, as Lambda unpacks layers in order into /opt."""
    for path in sorted(source.rglob("*")):
        destination = target / path.relative_to(source)
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.unlink(missing_ok=True)
        try:
            os.link(path, destination)
        except OSError:
            shutil.copy2(path, destination)


def moved_under_root(script: Path, root: Path) -> None:
    """The handler script with its `/opt` and `/var/task` paths under `root`, as the environment's:
    what the script does is the artifact's, only where Lambda mounts it differs (run.sh puts
    `/opt/python` on PYTHONPATH; without that line the gateway would not start, here as in AWS)."""
    text = LAMBDA_PATH_IN_TEXT.sub(lambda match: str(root) + match.group(0), script.read_text())
    mode = script.stat().st_mode
    script.unlink()  # a hard link into the assembly: replaced, not written through
    script.write_text(text)
    script.chmod(mode)


def lay_out(function: ShippedFunction, root: Path) -> Path:
    """`<root>/opt` and `<root>/var/task` as Lambda would unpack them; returns the task root."""
    opt = root / "opt"
    opt.mkdir(parents=True)
    for layer in function.layers:
        _place(layer, opt)
    task_root = root / TASK_ROOT
    task_root.mkdir(parents=True)
    _place(function.code, task_root)
    return task_root


def unzipped_size(function: ShippedFunction) -> int:
    """What Lambda counts against its 250 MB: the code and every layer of this stack unzipped."""
    files = (path for folder in (function.code, *function.layers) for path in folder.rglob("*"))
    return sum(path.lstat().st_size for path in files if path.is_symlink() or not path.is_dir())


# --- the environment ---------------------------------------------------------------------------


def under_root(value: str, root: Path) -> str:
    """A path Lambda provides (`/opt/…`, `/var/task…`) moved under the smoke's root."""
    for prefix in LAMBDA_PATHS:
        if value == prefix or value.startswith(prefix + "/"):
            return str(root) + value
    return value


def resolve_environment(
    template: Mapping[str, Any], root: Path, local: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The template's variables with paths under `root` and each token (a `Ref`, an import…)
    replaced by the local resource of the same variable; returns them and the variables whose
    token has no local stand-in (each fails the smoke: the function would start without it)."""
    environment, unresolved = {}, []
    for name, value in template.items():
        if isinstance(value, str):
            environment[name] = under_root(value, root)
        elif name in local:
            environment[name] = local[name]
        else:
            unresolved.append(f"{name}={json.dumps(value)}")
    return environment, unresolved


def lambda_environment(function: ShippedFunction, root: Path, python: Path) -> dict[str, str]:
    """What the Lambda service sets in every execution environment, before the function's own."""
    return {
        "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        # The runtime's own modules: nothing of the artifact's is there, and nothing here.
        "PYTHONPATH": under_root("/var/runtime", root),
        "LAMBDA_RUNTIME_DIR": under_root("/var/runtime", root),
        "LAMBDA_TASK_ROOT": str(root / TASK_ROOT),
        "_HANDLER": function.handler,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python",
        "AWS_LAMBDA_FUNCTION_NAME": function.label,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_REGION": names.LOCAL_REGION,
        "AWS_DEFAULT_REGION": names.LOCAL_REGION,
        # The execution role's temporary credentials; the stand-in accepts any.
        "AWS_ACCESS_KEY_ID": "ASIASMOKE",
        "AWS_SECRET_ACCESS_KEY": "smoke",
        "AWS_SESSION_TOKEN": "smoke",
    }


# --- the stand-ins -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def process(
    args: list[str], env: Mapping[str, str], log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, its output in `log`, stopped (then killed) on exit."""
    with log.open("wb") as output:
        child = subprocess.Popen(args, env=dict(env), cwd=cwd, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            yield child
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


def wait_for(url: str, child: subprocess.Popen[bytes], log: Path, ok: Callable[[int], bool] = lambda _: True) -> float:
    """Polls `url` until an answer `ok` accepts; returns when, on the monotonic clock."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SmokeError(f"{child.args} exited with {child.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if ok(httpx.get(url, timeout=1.0).status_code):
                return time.monotonic()
        except httpx.TransportError:
            pass
        time.sleep(READINESS_POLL_S)
    raise SmokeError(f"nothing answered at {url} within {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


@dataclass(frozen=True)
class StandIns:
    aws_url: str
    providers_url: str
    resources: dict[str, str]  # paymaster_local.resources: environment variable → local resource
    provider_endpoints: dict[str, str]


@contextmanager
def stand_ins(policy_file: Path, logs: Path) -> Iterator[StandIns]:
    """The local AWS stand-in and the fake providers, as the local stack starts them, with the
    policy's resources created."""
    from paymaster_local.resources import create_resources  # noqa: PLC0415

    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "PAYMASTER_"))}
    aws_port, providers_port = free_port(), free_port()
    aws_url, providers_url = f"http://127.0.0.1:{aws_port}", f"http://127.0.0.1:{providers_port}"
    with ExitStack() as stack:
        aws_log, providers_log = logs / "aws.log", logs / "providers.log"
        aws = stack.enter_context(
            process([sys.executable, "-m", "paymaster_local.aws", "--port", str(aws_port)], env, aws_log)
        )
        providers = stack.enter_context(
            process([sys.executable, "-m", "paymaster_local.fakes", "--port", str(providers_port)], env, providers_log)
        )
        wait_for(aws_url + "/moto-api/", aws, aws_log)
        policy = load_policy(policy_file)
        resources = create_resources(aws_url, policy)
        wait_for(providers_url + "/healthz", providers, providers_log)
        endpoints = {
            # OpenAI's base URL includes /v1; Anthropic's adapter and boto3 add their own paths.
            name: providers_url + ("/v1" if provider.kind == "openai" else "")
            for name, provider in policy.providers.items()
        }
        yield StandIns(aws_url, providers_url, resources, endpoints)


# --- driving the functions ---------------------------------------------------------------------


def sample_event(function: ShippedFunction) -> Path | None:
    sample = SAMPLE_EVENTS.get(function.name or "")
    return None if sample is None else EVENTS_DIR / sample


def request_context(event: Mapping[str, Any], role: str | None = None) -> str:
    """The header Lambda Web Adapter sets: the event's request context as JSON, with a request id
    of its own (API Gateway's id is the gateway's request id: one per request); with `role` the
    caller is that role of the same account instead."""
    context = json.loads(json.dumps(event["requestContext"])) | {"requestId": str(uuid.uuid4())}
    if role is not None:
        identity = context["identity"]
        account = identity["accountId"]
        identity["userArn"] = f"arn:aws:sts::{account}:assumed-role/{role}/smoke"
    return json.dumps(context)


def check_chat(report: SmokeReport, label: str, client: httpx.Client, event: Mapping[str, Any]) -> None:
    headers = {"content-type": "application/json", names.HEADER_REQUEST_CONTEXT: request_context(event)}
    body = json.loads(event["body"])
    answer = client.post(event["path"], content=json.dumps(body), headers=headers)
    payload = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
    choices = payload.get("choices") or [{}]
    ok = answer.status_code == 200 and bool(choices[0].get("message", {}).get("content")) and "usage" in payload
    report.add(label, f"POST {event['path']}", ok, f"{answer.status_code} {answer.text[:300]}")


def check_stream(report: SmokeReport, label: str, client: httpx.Client, event: Mapping[str, Any]) -> None:
    headers = {"content-type": "application/json", names.HEADER_REQUEST_CONTEXT: request_context(event)}
    body = json.loads(event["body"]) | {"stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", event["path"], content=json.dumps(body), headers=headers) as answer:
        status, content_type = answer.status_code, answer.headers.get("content-type", "")
        if status != 200:
            report.add(label, f"POST {event['path']} stream", False, f"{status} {answer.read().decode()[:300]}")
            return
        lines = [line for line in answer.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    text = "".join(
        (choice.get("delta") or {}).get("content") or "" for chunk in chunks for choice in chunk.get("choices", [])
    )
    ok = (
        status == 200
        and content_type.startswith("text/event-stream")
        and lines[-1:] == ["data: [DONE]"]
        and bool(text)
        and any(chunk.get("usage") for chunk in chunks)
    )
    report.add(
        label, f"POST {event['path']} stream", ok, f"{status} {content_type}, {len(lines)} events, text {text!r:.80}"
    )


def check_refusal(report: SmokeReport, label: str, client: httpx.Client, event: Mapping[str, Any]) -> None:
    """A role no team claims: the policy refuses it with 403 in OpenAI's error shape."""
    headers = {"content-type": "application/json", names.HEADER_REQUEST_CONTEXT: request_context(event, STRANGER_ROLE)}
    answer = client.post(event["path"], content=event["body"], headers=headers)
    error = (
        answer.json().get("error", {}) if answer.headers.get("content-type", "").startswith("application/json") else {}
    )
    ok = answer.status_code == 403 and error.get("type") == "permission_error"
    report.add(label, f"POST {event['path']} as an unknown role", ok, f"{answer.status_code} {answer.text[:300]}")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a running process, from /proc (None where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime: fields 14 and 15 of proc(5), counted after the command's closing paren.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive_web_app(
    report: SmokeReport, function: ShippedFunction, task_root: Path, environment: dict[str, str], log: Path
) -> None:
    """Start the handler script as Lambda Web Adapter does and send it what the adapter sends."""
    # Imported here: the module starts jsii, which synth has started by now.
    from paymaster_infra.web_adapter import LAYER_NAME  # noqa: PLC0415

    label = function.label
    if not any(LAYER_NAME in layer for layer in function.external_layers):
        report.add(label, "mounts Lambda Web Adapter", False, f"{WEB_ADAPTER_WRAPPER} comes from its layer")
        return
    script = task_root / function.handler
    if not os.access(script, os.X_OK):
        report.add(label, f"{function.handler} is executable", False, f"{script} is missing or not executable")
        return
    moved_under_root(script, task_root.parent.parent)
    event_file = sample_event(function)
    assert event_file is not None
    event = json.loads(event_file.read_text())
    # The adapter's own settings, from the function's environment; the port is a free one, so
    # that the smoke never meets another server on the template's.
    port = free_port()
    environment = environment | {"PORT": str(port)}
    readiness = environment.get("AWS_LWA_READINESS_CHECK_PATH", "/")
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with process([str(script)], environment, log, cwd=task_root) as child:
        try:
            ready = wait_for(url + readiness, child, log, ok=lambda status: status == 200)
        except SmokeError as error:
            report.add(label, f"GET {readiness}", False, str(error))
            return
        report.cold_start_s = ready - started
        report.cold_start_cpu_s = cpu_seconds(child.pid)
        report.add(label, f"GET {readiness}", True, f"first 200 after {report.cold_start_s:.2f} s")
        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
            check_chat(report, label, client, event)
            check_stream(report, label, client, event)
            check_refusal(report, label, client, event)
        if child.poll() is not None:
            report.add(label, "still running", False, f"exited with {child.returncode}:\n{log.read_text()[-3000:]}")


def invoke_handler(
    report: SmokeReport, function: ShippedFunction, *, root: Path, environment: dict[str, str], python: Path, log: Path
) -> None:
    """Import the handler from the laid-out code with the layers on `sys.path`, as the managed
    runtime does, and invoke it with the sample event; a batch handler must fail no record."""
    label = function.label
    event_file = sample_event(function)
    assert event_file is not None
    result_file = root / "result.json"
    args = [str(python), "-I", str(LAMBDA_RUNTIME), str(root / "opt"), str(event_file), str(result_file)]
    args.append(str(function.timeout_s))
    check = f"{function.handler}({event_file.relative_to(REPO_ROOT)})"
    with log.open("wb") as output:
        finished = subprocess.run(  # noqa: S603
            args,
            env=environment,
            cwd=root,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=function.timeout_s,
            check=False,
        )
    if finished.returncode != 0:
        report.add(label, check, False, f"exited with {finished.returncode}:\n{log.read_text()[-3000:]}")
        return
    result = json.loads(result_file.read_text())
    failures = result.get("batchItemFailures") if isinstance(result, dict) else None
    report.add(label, check, not failures, f"returned {json.dumps(result)[:300]}")


# --- the whole smoke ---------------------------------------------------------------------------


def run_smoke(out: Callable[[str], None] = print, cache: Path = CACHE_DIR) -> SmokeReport:
    report = SmokeReport()
    cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    python = runtime_python(cache)
    deps = deps_layer(cache, python)
    out(f"deps layer for {python}: {deps} ({time.monotonic() - started:.1f} s)")
    with tempfile.TemporaryDirectory(prefix="paymaster-smoke-") as scratch:
        scratch_dir = Path(scratch)
        outdir = scratch_dir / "cdk.out"
        synthesise(deps, outdir, scratch_dir / "staging")
        out(f"synthesised into {outdir} ({time.monotonic() - started:.1f} s)")
        report.functions = shipped_functions(outdir, code_folders())
        shipped = {function.name for function in report.functions}
        for folder in sorted(path.name for path in FUNCTIONS_DIR.iterdir() if path.is_dir()):
            report.add(folder, "in the template", folder in shipped, "" if folder in shipped else "not shipped")
        logs = scratch_dir / "logs"
        logs.mkdir()
        policy_file = REPO_ROOT / "policy" / "demo.yaml"
        with stand_ins(policy_file, logs) as local:
            for function in report.functions:
                run_function(report, function, scratch=scratch_dir, local=local, python=python, logs=logs)
        out(f"ran {len(report.functions)} functions ({time.monotonic() - started:.1f} s)")
    return report


def run_function(
    report: SmokeReport, function: ShippedFunction, *, scratch: Path, local: StandIns, python: Path, logs: Path
) -> None:
    """Lay the function out, give it its template's environment and run it as Lambda would."""
    label = function.label
    size = unzipped_size(function)
    report.sizes[label] = size
    report.add(label, "fits 250 MiB unzipped", size <= LAMBDA_UNZIPPED_LIMIT_BYTES, f"{size / MIB:.1f} MiB")
    if function.name is None:
        report.add(label, "code from functions/", False, f"{function.code} matches no folder of {FUNCTIONS_DIR}")
        return
    if sample_event(function) is None:
        report.add(label, "has a sample event", False, f"add functions/{function.name} to SAMPLE_EVENTS")
        return
    root = scratch / "roots" / function.name
    task_root = lay_out(function, root)
    resolved, unresolved = resolve_environment(function.environment, root, local.resources)
    pointed = {"AWS_ENDPOINT_URL": local.aws_url, names.ENV_PROVIDER_ENDPOINTS: json.dumps(local.provider_endpoints)}
    local_only = sorted({*pointed, *LOCAL_ONLY_VARIABLES} & set(function.environment))
    if unresolved or local_only:
        problems = [f"no local stand-in for {', '.join(unresolved)}"] if unresolved else []
        problems += [f"sets what only the local stack may set: {', '.join(local_only)}"] if local_only else []
        report.add(label, "environment", False, "; ".join(problems))
        return
    environment = lambda_environment(function, root, python) | resolved | pointed
    log = logs / f"{function.name}.log"
    if function.is_web_app:
        drive_web_app(report, function, task_root, environment, log)
    else:
        invoke_handler(report, function, root=root, environment=environment, python=python, log=log)


def main() -> None:
    try:
        report = run_smoke()
    except SmokeError as error:
        sys.exit(f"smoke: {error}")
    for outcome in report.outcomes:
        mark = "ok  " if outcome.ok else "FAIL"
        detail = outcome.detail if not outcome.ok else outcome.detail.splitlines()[0] if outcome.detail else ""
        print(f"{mark} {outcome.function:18} {outcome.check:45} {detail}".rstrip())
    if report.cold_start_s is not None:
        cpu = "" if report.cold_start_cpu_s is None else f", {report.cold_start_cpu_s:.2f} s of CPU"
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(f"cold start (process start to first /healthz 200): {report.cold_start_s:.2f} s{cpu} (load {load})")
    for label, size in report.sizes.items():
        share = size / LAMBDA_UNZIPPED_LIMIT_BYTES
        print(f"unzipped {label:18} {size / MIB:6.1f} MiB of 250 MiB ({share:.0%}), code and layers")
    if report.failed:
        sys.exit(f"smoke: {len(report.failed)} checks failed")


if __name__ == "__main__":
    main()
