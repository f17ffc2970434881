"""The smoke's parts, without synth or stand-ins: how it reads the assembly, lays a function out,
resolves its environment and refuses a function it cannot test."""

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

import lambda_runtime
import smoke
from paymaster import names

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def shipped(tmp_path: Path, **overrides: Any) -> smoke.ShippedFunction:
    fields: dict[str, Any] = {
        "stack": "PaymasterGateway",
        "logical_id": "SweeperFunction1A2B",
        "name": "sweeper",
        "handler": "app.handler",
        "environment": {},
        "timeout_s": 60,
        "memory_mb": 1024,
        "code": tmp_path / "code",
        "layers": (),
        "external_layers": (),
    }
    return smoke.ShippedFunction(**(fields | overrides))


def test_template_tokens_become_the_local_resource_of_the_same_variable_and_lambda_paths_move_under_the_root(
    tmp_path: Path,
) -> None:
    template = {
        names.ENV_COUNTERS_TABLE: {"Fn::ImportValue": "PaymasterState:ExportsOutputRefTablesCounters"},
        names.ENV_POLICY_FILE: "/opt/policy/policy.yaml",
        names.ENV_METRICS_NAMESPACE: "paymaster",
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
    }
    environment, unresolved = smoke.resolve_environment(template, tmp_path, {names.ENV_COUNTERS_TABLE: "counters"})
    assert unresolved == []
    assert environment == {
        names.ENV_COUNTERS_TABLE: "counters",
        names.ENV_POLICY_FILE: f"{tmp_path}/opt/policy/policy.yaml",
        names.ENV_METRICS_NAMESPACE: "paymaster",
        "AWS_LAMBDA_EXEC_WRAPPER": f"{tmp_path}/opt/bootstrap",
    }


def test_a_token_the_stand_in_has_no_resource_for_is_reported_not_passed_on(tmp_path: Path) -> None:
    template = {"PAYMASTER_OPS_TOPIC_ARN": {"Ref": "OpsTopic1234"}, names.ENV_LEDGER_TABLE: {"Ref": "Ledger"}}
    environment, unresolved = smoke.resolve_environment(template, tmp_path, {names.ENV_LEDGER_TABLE: "ledger"})
    assert environment == {names.ENV_LEDGER_TABLE: "ledger"}
    assert unresolved == ['PAYMASTER_OPS_TOPIC_ARN={"Ref": "OpsTopic1234"}']


@pytest.mark.parametrize("value", ["/optional", "/var/tasks", "arn:aws:sqs:us-east-1:1:q", "opt/x", "8080"])
def test_values_that_are_not_lambda_paths_stay_as_they_are(value: str, tmp_path: Path) -> None:
    assert smoke.under_root(value, tmp_path) == value


def test_the_handler_script_reads_its_lambda_paths_under_the_root_without_touching_the_assembly(
    tmp_path: Path,
) -> None:
    staged = write(
        tmp_path / "asset" / "run.sh",
        '#!/bin/bash\nexport PYTHONPATH="/opt/python${PYTHONPATH:+:$PYTHONPATH}"\ncd /var/task && ls /optimize\n',
    )
    staged.chmod(0o755)
    laid_out = tmp_path / "root" / "var" / "task" / "run.sh"
    laid_out.parent.mkdir(parents=True)
    os.link(staged, laid_out)
    root = tmp_path / "root"

    smoke.moved_under_root(laid_out, root)

    assert laid_out.read_text() == (
        f'#!/bin/bash\nexport PYTHONPATH="{root}/opt/python${{PYTHONPATH:+:$PYTHONPATH}}"\n'
        f"cd {root}/var/task && ls /optimize\n"
    )
    assert stat.S_IMODE(laid_out.stat().st_mode) == 0o755
    assert "/opt/python$" in staged.read_text()


def test_layers_unpack_in_order_into_opt_and_the_code_into_var_task(tmp_path: Path) -> None:
    write(tmp_path / "core" / "python" / "paymaster" / "__init__.py", "core")
    write(tmp_path / "core" / "python" / "shared.txt", "from core")
    write(tmp_path / "deps" / "python" / "shared.txt", "from deps")
    write(tmp_path / "policy" / "policy" / "policy.yaml", "version: 1")
    write(tmp_path / "code" / "app.py", "handler = print")
    function = shipped(tmp_path, layers=(tmp_path / "core", tmp_path / "deps", tmp_path / "policy"))

    task_root = smoke.lay_out(function, tmp_path / "root")

    opt = tmp_path / "root" / "opt"
    assert task_root == tmp_path / "root" / "var" / "task"
    assert (task_root / "app.py").read_text() == "handler = print"
    assert (opt / "python" / "paymaster" / "__init__.py").read_text() == "core"
    assert (opt / "python" / "shared.txt").read_text() == "from deps"
    assert (opt / "policy" / "policy.yaml").read_text() == "version: 1"
    assert (tmp_path / "core" / "python" / "shared.txt").read_text() == "from core"


def test_the_unzipped_size_counts_the_code_and_every_layer(tmp_path: Path) -> None:
    write(tmp_path / "code" / "app.py", "x" * 100)
    write(tmp_path / "deps" / "python" / "big.bin", "y" * 5_000)
    write(tmp_path / "policy" / "policy" / "policy.yaml", "z" * 20)
    function = shipped(tmp_path, layers=(tmp_path / "deps", tmp_path / "policy"))
    assert smoke.unzipped_size(function) == 5_120


def assembly(tmp_path: Path, functions_dir: Path) -> Path:
    """A cloud assembly of one stack: a function from functions/sweeper with one layer of the
    stack and one by ARN, and a function whose code is no folder of functions/."""
    outdir = tmp_path / "cdk.out"
    write(outdir / "asset.aaa" / "app.py", (functions_dir / "sweeper" / "app.py").read_text())
    write(outdir / "asset.bbb" / "python" / "paymaster" / "__init__.py", "")
    write(outdir / "asset.ccc" / "app.py", "def handler(event, context): ...")
    files = {
        digest: {
            "source": {"path": f"asset.{digest}", "packaging": "zip"},
            "destinations": {"current": {"objectKey": f"{digest}.zip"}},
        }
        for digest in ("aaa", "bbb", "ccc")
    }
    write(outdir / "Stack.assets.json", json.dumps({"version": "48.0.0", "files": files}))
    adapter = {
        "Fn::Join": ["", ["arn:aws:lambda:", {"Ref": "AWS::Region"}, ":753240598075:layer:LambdaAdapterLayerArm64:28"]]
    }
    resources = {
        "Core": {"Type": "AWS::Lambda::LayerVersion", "Properties": {"Content": {"S3Key": "bbb.zip"}}},
        "Sweeper": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Code": {"S3Key": "aaa.zip"},
                "Handler": "app.handler",
                "Layers": [adapter, {"Ref": "Core"}],
                "Environment": {"Variables": {names.ENV_COUNTERS_TABLE: {"Ref": "Counters"}}},
                "Timeout": 60,
                "MemorySize": 1024,
            },
        },
        "Stray": {
            "Type": "AWS::Lambda::Function",
            "Properties": {"Code": {"S3Key": "ccc.zip"}, "Handler": "app.handler"},
        },
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {}},
    }
    write(outdir / "Stack.template.json", json.dumps({"Resources": resources}))
    return outdir


def test_each_function_of_the_assembly_is_read_with_its_staged_code_layers_and_code_folder(tmp_path: Path) -> None:
    outdir = assembly(tmp_path, smoke.FUNCTIONS_DIR)

    sweeper, stray = smoke.shipped_functions(outdir, smoke.code_folders())

    assert sweeper.name == "sweeper"
    assert sweeper.code == outdir / "asset.aaa"
    assert sweeper.layers == (outdir / "asset.bbb",)
    assert len(sweeper.external_layers) == 1
    assert "LambdaAdapterLayerArm64" in sweeper.external_layers[0]
    assert sweeper.environment == {names.ENV_COUNTERS_TABLE: {"Ref": "Counters"}}
    assert (sweeper.timeout_s, sweeper.memory_mb, sweeper.is_web_app) == (60, 1024, False)
    assert stray.name is None
    assert stray.label == "Stack/Stray"


class Unused:
    """Stand-ins a check must not reach: any use of them fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the stand-ins were used: {name}")


@pytest.mark.parametrize(
    ("name", "check"),
    [("new_function", "has a sample event"), (None, "code from functions/")],
    ids=["no-sample", "stray"],
)
def test_a_function_the_smoke_cannot_invoke_fails_it_before_anything_runs(
    name: str | None, check: str, tmp_path: Path
) -> None:
    write(tmp_path / "code" / "app.py", "")
    report = smoke.SmokeReport()
    function = shipped(tmp_path, name=name)

    smoke.run_function(report, function, scratch=tmp_path, local=Unused(), python=Path("python"), logs=tmp_path)  # type: ignore[arg-type]

    assert [(outcome.check, outcome.ok) for outcome in report.outcomes] == [
        ("fits 250 MiB unzipped", True),
        (check, False),
    ]


def test_a_template_that_sets_a_local_only_variable_fails_the_smoke(tmp_path: Path) -> None:
    write(tmp_path / "code" / "app.py", "")
    report = smoke.SmokeReport()
    function = shipped(tmp_path, environment={names.ENV_PROVIDER_ENDPOINTS: '{"openai": "http://x"}'})
    local = smoke.StandIns("http://aws", "http://fakes", {}, {})

    smoke.run_function(report, function, scratch=tmp_path, local=local, python=Path("python"), logs=tmp_path)

    failed = report.failed
    assert [outcome.check for outcome in failed] == ["environment"]
    assert names.ENV_PROVIDER_ENDPOINTS in failed[0].detail


def test_every_request_the_smoke_sends_has_its_own_request_id_and_the_refusal_a_role_no_team_claims() -> None:
    event = json.loads((REPO / "events" / "apigateway" / "rest-chat-assumed-role.json").read_text())
    first, second = (json.loads(smoke.request_context(event)) for _ in range(2))
    stranger = json.loads(smoke.request_context(event, "nobody"))

    assert first["requestId"] != second["requestId"]
    assert first["identity"] == event["requestContext"]["identity"]
    assert stranger["identity"]["userArn"] == "arn:aws:sts::111111111111:assumed-role/nobody/smoke"


def test_every_sample_event_the_smoke_names_exists() -> None:
    for sample in smoke.SAMPLE_EVENTS.values():
        json.loads((smoke.EVENTS_DIR / sample).read_text())


def test_the_denials_sqs_sample_carries_the_published_request_denied_event() -> None:
    event = json.loads((REPO / "events" / "sqs" / "request-denied.json").read_text())
    published = json.loads((REPO / "events" / "published" / "request-denied.json").read_text())
    (record,) = event["Records"]
    assert json.loads(record["body"]) == published
    assert record["eventSource"] == "aws:sqs"


def test_the_runtime_puts_the_code_before_the_layers_as_lambda_does(tmp_path: Path) -> None:
    path = lambda_runtime.python_path(tmp_path / "var" / "task", tmp_path / "opt")
    assert path[0] == str(tmp_path / "var" / "task")
    assert path[-1] == str(tmp_path / "opt" / "python")
    assert path[1].startswith(str(tmp_path / "opt" / "python" / "lib" / "python3."))
    assert path[1].endswith("site-packages")


def test_the_cpu_time_of_a_process_is_read_from_proc_and_none_for_one_that_is_gone() -> None:
    spent = smoke.cpu_seconds(os.getpid())
    assert spent is not None
    assert 0 < spent <= time.process_time() + 0.05
    assert smoke.cpu_seconds(2**22 + 1) is None


def test_the_budget_alarm_sqs_sample_carries_the_published_budget_threshold_crossed_event() -> None:
    event = json.loads((REPO / "events" / "sqs" / "budget-threshold-crossed.json").read_text())
    published = json.loads((REPO / "events" / "published" / "budget-threshold-crossed.json").read_text())
    (record,) = event["Records"]
    assert json.loads(record["body"]) == published
