"""Template assertions on the synthesised paymaster stacks (one synth per session, in conftest)."""

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, CfnElement, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template
from constructs import Construct

from paymaster import names, schema
from paymaster.adapters.settings import LedgerSettings, Settings
from paymaster_infra import (
    denial_queue,
    lambda_defaults,
    ledger_denials,
    ledger_function,
    settlement_queue,
    settlement_retry,
    state_parameters,
    target,
    web_adapter,
)
from paymaster_infra.config import AppConfig
from paymaster_infra.deployment import Paymaster
from paymaster_infra.gateway_api import API_PREFIX, STAGE_NAME
from paymaster_infra.layers import POLICY_FILE, TIKTOKEN_DIR

RETAINED = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}


def logical_id(construct: Any) -> str:
    element = construct if isinstance(construct, CfnElement) else construct.node.default_child
    return str(Stack.of(element).resolve(element.logical_id))


# How each reference the gateway stack holds names a state resource's attribute (Ref: None).
_REFERENCE_ATTRIBUTES: dict[str | None, tuple[str, ...]] = {
    None: ("table_name", "queue_url", "event_bus_name"),
    "Arn": ("table_arn", "queue_arn", "event_bus_arn"),
    "StreamArn": ("table_stream_arn",),
}


def import_of(state_template: Template, resource_id: str, attribute: str | None) -> Any:
    """How the gateway stack refers to a state resource's attribute (its Ref when None).

    The state stack writes the resource's name or ARN into an SSM parameter
    (`paymaster_infra.state_parameters`); the gateway stack reads it back as a CloudFormation
    parameter and builds its references from it. Found here by the parameter that names the
    resource, resolved as `read_state` resolves it in any stack (its ids are the stack's own).
    """
    names_it = [
        parameter["Properties"]["Name"]
        for parameter in state_template.find_resources("AWS::SSM::Parameter").values()
        if json.dumps(resource_id) in json.dumps(parameter["Properties"]["Value"])
    ]
    assert names_it, f"no SSM parameter names {resource_id}"
    (field,) = {name.removeprefix(state_parameters.PARAMETER_PREFIX + "/").split("/")[0] for name in names_it}
    stack, state = _scratch_state()
    reference = getattr(state, field)
    (name,) = [name for name in _REFERENCE_ATTRIBUTES[attribute] if hasattr(reference, name)]
    return stack.resolve(getattr(reference, name))


def joined(*parts: Any) -> dict[str, Any]:
    """`Fn::Join` of `parts` as CDK writes it: nested joins spliced in, adjacent strings merged
    (a table ARN the gateway stack builds from the table's name is itself a join)."""
    flat: list[Any] = []
    for part in parts:
        inner = part["Fn::Join"][1] if isinstance(part, dict) and part.get("Fn::Join", [None])[0] == "" else [part]
        for item in inner:
            if isinstance(item, str) and flat and isinstance(flat[-1], str):
                flat[-1] += item
            else:
                flat.append(item)
    return {"Fn::Join": ["", flat]}


@cache
def _scratch_state() -> tuple[Stack, state_parameters.StateResources]:
    stack = Stack(App(), "Scratch")
    return stack, state_parameters.read_state(Construct(stack, "State"))


def properties(template: Template, construct: Any) -> dict[str, Any]:
    resource: dict[str, Any] = template.to_json()["Resources"][logical_id(construct)]["Properties"]
    return resource


def gateway_function(gateway_template: Template, paymaster: Paymaster) -> dict[str, Any]:
    return properties(gateway_template, paymaster.gateway.gateway.function)


def retry_function(gateway_template: Template, paymaster: Paymaster) -> dict[str, Any]:
    return properties(gateway_template, paymaster.gateway.settlement_retry.function)


def ledger_lambda(gateway_template: Template, paymaster: Paymaster) -> dict[str, Any]:
    return properties(gateway_template, paymaster.gateway.ledger.function)


def denials_lambda(gateway_template: Template, paymaster: Paymaster) -> dict[str, Any]:
    return properties(gateway_template, paymaster.gateway.ledger_denials.function)


def event_source_of(gateway_template: Template, function: lambda_.Function) -> dict[str, Any]:
    """The one event source mapping that invokes `function`, without its tags."""
    (mapping,) = [
        {key: value for key, value in m["Properties"].items() if key != "Tags"}
        for m in gateway_template.find_resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": logical_id(function)}
    ]
    return mapping


def role_statements(template: Template, function: lambda_.Function) -> list[dict[str, Any]]:
    """The statements of every policy attached to `function`'s role."""
    role = {"Ref": logical_id(function.role)}
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if role in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def allowed_on(statements: list[dict[str, Any]], resource: Any) -> set[str]:
    """The actions the statements allow on `resource`."""
    return {
        action
        for s in statements
        if s["Effect"] == "Allow" and resource in as_list(s["Resource"])
        for action in as_list(s["Action"])
    }


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def assert_grants_exactly(statements: list[dict[str, Any]], grants: list[tuple[Any, set[str]]]) -> None:
    """Each (resource, actions): the statements allow exactly those actions on it, and no others anywhere."""
    for resource, actions in grants:
        assert allowed_on(statements, resource) == actions, resource
    assert {action for s in statements for action in as_list(s["Action"])} == set().union(*(a for _, a in grants))


LOG_WRITES = {"logs:CreateLogStream", "logs:PutLogEvents"}


def own_logs(template: Template, function: lambda_.Function) -> tuple[Any, set[str]]:
    """What a function may do with logs: write to its own log group, nothing else."""
    log_group = properties(template, function)["LoggingConfig"]["LogGroup"]["Ref"]
    return {"Fn::GetAtt": [log_group, "Arn"]}, LOG_WRITES


def settings_of(variables: dict[str, Any]) -> Settings:
    """What `Settings.from_environ` makes of a function's environment at cold start in Lambda.

    Values CloudFormation fills in at deploy time (imports, references) stand in as
    `<variable name>`; Lambda sets AWS_REGION itself. A setting the model requires that the
    environment lacks fails here, as it would fail the function's cold start.
    """
    assert names.ENV_REGION not in variables  # reserved: Lambda sets it
    environ = {name: value if isinstance(value, str) else f"<{name}>" for name, value in variables.items()}
    return Settings.from_environ({**environ, names.ENV_REGION: "eu-west-1"})


# --- API --------------------------------------------------------------------------------------


def test_every_api_method_requires_an_iam_signature(gateway_template: Template) -> None:
    methods = gateway_template.find_resources("AWS::ApiGateway::Method")
    assert methods
    assert {m["Properties"]["AuthorizationType"] for m in methods.values()} == {"AWS_IAM"}


def test_v1_proxy_streams_responses_from_the_gateway_function(gateway_template: Template, paymaster: Paymaster) -> None:
    proxy = paymaster.gateway.api.api.root.get_resource(API_PREFIX).get_resource("{proxy+}")
    function_id = logical_id(paymaster.gateway.gateway.function)
    gateway_template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "ANY",
            "ResourceId": {"Ref": logical_id(proxy)},
            "Integration": {
                "Type": "AWS_PROXY",
                "ResponseTransferMode": "STREAM",
                "TimeoutInMillis": int(lambda_defaults.TIMEOUT.to_milliseconds()),
                "Uri": {
                    "Fn::Join": [
                        "",
                        Match.array_with(
                            [
                                {"Fn::GetAtt": [function_id, "Arn"]},
                                "/response-streaming-invocations",
                            ]
                        ),
                    ]
                },
            },
        },
    )


def test_stage_traces_logs_access_and_throttles(gateway_template: Template) -> None:
    gateway_template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": STAGE_NAME,
            "TracingEnabled": True,
            "AccessLogSetting": {
                "DestinationArn": Match.any_value(),
                "Format": Match.string_like_regexp(r"\$context\.identity\.userArn"),
            },
            "MethodSettings": [
                Match.object_like(
                    {
                        "HttpMethod": "*",
                        "ResourcePath": "/*",
                        "LoggingLevel": "ERROR",
                        "DataTraceEnabled": False,
                        "ThrottlingRateLimit": Match.any_value(),
                        "ThrottlingBurstLimit": Match.any_value(),
                    }
                )
            ],
        },
    )


def test_api_refusals_use_openai_error_shape(gateway_template: Template) -> None:
    responses = gateway_template.find_resources("AWS::ApiGateway::GatewayResponse")
    assert {r["Properties"]["ResponseType"] for r in responses.values()} == {
        "DEFAULT_4XX",
        "DEFAULT_5XX",
    }
    for response in responses.values():
        assert '{"error": {"message":' in response["Properties"]["ResponseTemplates"]["application/json"]


def test_an_output_names_the_ledger_function_that_replays_the_failure_queue(gateway_template: Template) -> None:
    (function_id,) = [
        logical_id
        for logical_id, resource in gateway_template.find_resources("AWS::Lambda::Function").items()
        if resource["Properties"].get("Handler") == "app.handler" and logical_id.startswith("LedgerFunction")
    ]

    gateway_template.has_output("LedgerFunctionName", {"Value": {"Ref": function_id}})


def test_outputs_tell_apps_the_url_and_the_arn_to_invoke(gateway_template: Template) -> None:
    gateway_template.has_output(
        "ApiUrl",
        {"Value": {"Fn::Join": ["", Match.array_with([f"/{API_PREFIX}"])]}},
    )
    gateway_template.has_output(
        "InvokeArn",
        {
            "Value": {
                "Fn::Join": [
                    "",
                    Match.array_with([":execute-api:", f"/{STAGE_NAME}/*/{API_PREFIX}/*"]),
                ]
            }
        },
    )


# --- gateway function -------------------------------------------------------------------------


def test_gateway_runs_behind_lambda_web_adapter_in_streaming_mode(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    function = gateway_function(gateway_template, paymaster)
    assert function["Handler"] == "run.sh"
    expected = {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "PORT": "8080",
        "AWS_LWA_READINESS_CHECK_PATH": "/healthz",
    }
    variables = function["Environment"]["Variables"]
    assert {name: variables.get(name) for name in expected} == expected
    # Env-agnostic: the version comes from the per-region table, as a mapping the deploy reads.
    (mapping_id,) = gateway_template.to_json()["Mappings"]
    adapter_layer = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":lambda:",
                {"Ref": "AWS::Region"},
                ":753240598075:layer:LambdaAdapterLayerArm64:",
                {"Fn::FindInMap": [mapping_id, {"Ref": "AWS::Region"}, "version"]},
            ],
        ]
    }
    assert adapter_layer in function["Layers"]
    assert gateway_template.to_json()["Mappings"][mapping_id] == {
        region: {"version": version} for region, version in web_adapter.LAYER_VERSIONS.items()
    }


def test_gateway_mounts_core_deps_tokenizer_and_policy_layers(gateway_template: Template, paymaster: Paymaster) -> None:
    layers = paymaster.gateway.layers
    own = [layers.core, layers.deps, layers.tokenizers, layers.policy]
    function = gateway_function(gateway_template, paymaster)
    assert [{"Ref": logical_id(layer)} for layer in own] == function["Layers"][1:]
    for layer in gateway_template.find_resources("AWS::Lambda::LayerVersion").values():
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
        assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_gateway_environment_names_its_resources(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    tables = paymaster.state.tables
    variables = gateway_function(gateway_template, paymaster)["Environment"]["Variables"]
    assert variables[names.ENV_COUNTERS_TABLE] == import_of(state_template, logical_id(tables.counters), None)
    assert variables[names.ENV_LEDGER_TABLE] == import_of(state_template, logical_id(tables.ledger), None)
    assert variables[names.ENV_PROMPTS_TABLE] == import_of(state_template, logical_id(tables.prompts), None)
    assert variables[names.ENV_EVENT_BUS] == import_of(state_template, logical_id(paymaster.state.events.bus), None)
    queue = paymaster.state.settlements.queue
    assert variables[names.ENV_SETTLEMENT_QUEUE_URL] == import_of(state_template, logical_id(queue), None)
    assert variables[names.ENV_POLICY_FILE] == POLICY_FILE
    assert variables[names.ENV_TIKTOKEN_DIR] == TIKTOKEN_DIR == "/opt/tiktoken"
    assert variables[names.ENV_IDENTITY] == "request-context"


def test_gateway_environment_holds_every_setting_the_gateway_requires(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    settings = settings_of(gateway_function(gateway_template, paymaster)["Environment"]["Variables"])
    assert settings.settlement_queue_url == f"<{names.ENV_SETTLEMENT_QUEUE_URL}>"
    assert settings.ledger_table == f"<{names.ENV_LEDGER_TABLE}>"  # build_gateway refuses to start without
    assert settings.prompts_table == f"<{names.ENV_PROMPTS_TABLE}>"
    assert settings.identity == "request-context"
    assert settings.one_request_at_a_time


def test_gateway_prints_its_metrics_in_paymaster_s_namespace(gateway_template: Template, paymaster: Paymaster) -> None:
    variables = gateway_function(gateway_template, paymaster)["Environment"]["Variables"]
    assert variables[names.ENV_METRICS_NAMESPACE] == "paymaster"
    assert settings_of(variables).metrics_namespace == names.METRICS_NAMESPACE
    # No Powertools switch that would silence them in Lambda.
    assert "POWERTOOLS_METRICS_DISABLED" not in variables
    assert "POWERTOOLS_DEV" not in variables


def test_policy_file_is_staged_where_the_function_reads_it(config: AppConfig) -> None:
    staged = config.staging_dir / "policy-layer" / Path(POLICY_FILE).relative_to("/opt")
    assert staged.read_bytes() == config.policy_file.read_bytes()


@pytest.mark.parametrize(
    ("which", "timeout_s"),
    [
        (gateway_function, 300),
        (retry_function, settlement_queue.CONSUMER_TIMEOUT.to_seconds()),
        (ledger_lambda, ledger_function.TIMEOUT.to_seconds()),
        (denials_lambda, denial_queue.CONSUMER_TIMEOUT.to_seconds()),
    ],
)
def test_functions_use_the_lambda_defaults_with_their_own_timeout(
    gateway_template: Template,
    paymaster: Paymaster,
    which: Callable[[Template, Paymaster], dict[str, Any]],
    timeout_s: float,
) -> None:
    function = which(gateway_template, paymaster)
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["MemorySize"] == 1024
    assert function["Timeout"] == timeout_s
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    log_group_id = function["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = gateway_template.to_json()["Resources"][log_group_id]
    assert log_group["Properties"]["RetentionInDays"] == 90


def test_lambda_defaults_match_the_platform_the_layers_are_built_for() -> None:
    assert lambda_defaults.RUNTIME.name == f"python{target.PYTHON_VERSION}"
    assert lambda_defaults.ARCHITECTURE.name == "arm64"
    assert target.UV_PLATFORM.startswith("aarch64-")


def test_gateway_role_may_send_what_the_counter_store_sends_and_put_events(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    state = paymaster.state
    counters_arn = import_of(state_template, logical_id(state.tables.counters), "Arn")
    bus_arn = import_of(state_template, logical_id(state.events.bus), "Arn")
    statements = role_statements(gateway_template, paymaster.gateway.gateway.function)

    # The store's transactions (Update and Put items) and counter reads; its index query for the sweeper.
    assert allowed_on(statements, counters_arn) == {"dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:BatchGetItem"}
    held_index = joined(counters_arn, f"/index/{schema.HELD_INDEX}")
    assert allowed_on(statements, held_index) == {"dynamodb:Query"}
    assert "events:PutEvents" in allowed_on(statements, bus_arn)
    queue_arn = import_of(state_template, logical_id(state.settlements.queue), "Arn")
    assert allowed_on(statements, queue_arn) == {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    assert not any(
        "*" in as_list(s["Resource"]) and any(a.startswith("dynamodb:") for a in as_list(s["Action"]))
        for s in statements
    )


def rendered(value: Any) -> Any:
    """A template value with `Fn::Join`s of `Ref`s written out: `arn:${AWS::Partition}:...`."""
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(rendered(part) for part in parts)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return "${" + value["Ref"] + "}"
    if isinstance(value, dict):
        return {key: rendered(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rendered(item) for item in value]
    return value


def grants_of(statements: list[dict[str, Any]], service: str) -> list[tuple[set[str], list[str], Any]]:
    """(actions, resources, condition) of each Allow statement with an action of `service`."""
    return [
        (set(as_list(s["Action"])), as_list(rendered(s["Resource"])), rendered(s.get("Condition")))
        for s in statements
        if s["Effect"] == "Allow" and any(a.startswith(f"{service}:") for a in as_list(s["Action"]))
    ]


# (region, model) behind the demo's `us.` inference profiles, and the models it calls directly.
DEMO_PROFILED = [
    ("us-east-1", "anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("us-west-2", "anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("us-east-1", "anthropic.claude-sonnet-4-20250514-v1:0"),
    ("us-east-1", "amazon.nova-lite-v1:0"),
    ("us-east-1", "meta.llama3-3-70b-instruct-v1:0"),
]
DEMO_BEDROCK_MODELS = sorted({model for _, model in DEMO_PROFILED})
DEMO_DIRECT_MODELS = ["amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"]
BEDROCK_INVOKE = {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"}


def test_gateway_role_may_invoke_exactly_the_demo_policy_bedrock_models(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    bedrock = grants_of(role_statements(gateway_template, paymaster.gateway.gateway.function), "bedrock")
    assert {frozenset(actions) for actions, _, _ in bedrock} == {frozenset(BEDROCK_INVOKE)}
    profiles = [
        f"arn:${{AWS::Partition}}:bedrock:{region}:${{AWS::AccountId}}:inference-profile/us.{model}"
        for region, model in DEMO_PROFILED
    ]
    # The profiles themselves, directly; each one's model in any region, only through it; the
    # embeddings models (no profiles) in their region, directly.
    assert sorted(
        ((resource, condition) for _, resources, condition in bedrock for resource in resources), key=repr
    ) == sorted(
        [(profile, None) for profile in profiles]
        + [
            (
                f"arn:${{AWS::Partition}}:bedrock:*::foundation-model/{model}",
                {"StringEquals": {"bedrock:InferenceProfileArn": profile}},
            )
            for (_, model), profile in zip(DEMO_PROFILED, profiles, strict=True)
        ]
        + [
            (f"arn:${{AWS::Partition}}:bedrock:us-east-1::foundation-model/{model}", None)
            for model in DEMO_DIRECT_MODELS
        ],
        key=repr,
    )


def test_gateway_role_may_read_exactly_the_demo_policy_provider_secrets(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    secrets = grants_of(role_statements(gateway_template, paymaster.gateway.gateway.function), "secretsmanager")
    assert secrets == [
        (
            {"secretsmanager:GetSecretValue"},
            [
                "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
                f"paymaster/providers/{name}-??????"
                for name in ("openai", "anthropic")
            ],
            None,
        )
    ]


# --- settlement-retry function ---------------------------------------------------------------


def test_settlement_retry_runs_its_handler_on_the_core_deps_and_policy_layers_only(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    layers = paymaster.gateway.layers
    function = retry_function(gateway_template, paymaster)
    assert function["Handler"] == "app.handler"
    # No tokenizer files (it counts no tokens) and no Lambda Web Adapter (it runs no web app).
    assert function["Layers"] == [{"Ref": logical_id(layer)} for layer in (layers.core, layers.deps, layers.policy)]
    assert "AWS_LAMBDA_EXEC_WRAPPER" not in function["Environment"]["Variables"]


def test_settlement_retry_reads_the_queue_in_batches_and_reports_each_failed_settlement(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    queue_arn = import_of(state_template, logical_id(paymaster.state.settlements.queue), "Arn")
    assert event_source_of(gateway_template, paymaster.gateway.settlement_retry.function) == {
        "EventSourceArn": queue_arn,
        "FunctionName": {"Ref": logical_id(paymaster.gateway.settlement_retry.function)},
        "BatchSize": 10,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": settlement_retry.MAX_CONCURRENCY},
    }


def test_settlement_queue_visibility_is_at_least_six_times_the_retry_function_timeout(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    timeout_s = retry_function(gateway_template, paymaster)["Timeout"]
    visibility_s = properties(state_template, paymaster.state.settlements.queue)["VisibilityTimeout"]
    assert visibility_s >= 6 * timeout_s
    assert timeout_s < gateway_function(gateway_template, paymaster)["Timeout"]


def test_settlement_retry_environment_holds_every_setting_it_requires(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    variables = retry_function(gateway_template, paymaster)["Environment"]["Variables"]
    assert settings_of(variables).prompts_table == f"<{names.ENV_PROMPTS_TABLE}>"
    counters, prompts = paymaster.state.tables.counters, paymaster.state.tables.prompts
    assert variables[names.ENV_COUNTERS_TABLE] == import_of(state_template, logical_id(counters), None)
    assert variables[names.ENV_PROMPTS_TABLE] == import_of(state_template, logical_id(prompts), None)
    queue = paymaster.state.settlements.queue
    assert variables[names.ENV_SETTLEMENT_QUEUE_URL] == import_of(state_template, logical_id(queue), None)
    assert variables[names.ENV_POLICY_FILE] == POLICY_FILE


def test_settlement_retry_role_may_only_settle_on_the_counters_put_prompts_and_consume_the_queue(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    state = paymaster.state
    counters_arn = import_of(state_template, logical_id(state.tables.counters), "Arn")
    prompts_arn = import_of(state_template, logical_id(state.tables.prompts), "Arn")
    queue_arn = import_of(state_template, logical_id(state.settlements.queue), "Arn")
    statements = role_statements(gateway_template, paymaster.gateway.settlement_retry.function)

    # TransactWriteItems' Update and Put items; no reads, no index, no ledger, bus or providers.
    consume = {
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    }
    assert_grants_exactly(
        statements,
        [
            own_logs(gateway_template, paymaster.gateway.settlement_retry.function),
            (counters_arn, {"dynamodb:UpdateItem", "dynamodb:PutItem"}),
            (prompts_arn, {"dynamodb:PutItem"}),
            (queue_arn, consume),
            ("*", {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}),
        ],
    )


# --- ledger function ----------------------------------------------------------------------


def test_ledger_runs_its_handler_on_the_core_deps_and_policy_layers_with_the_ledger_table_bus_and_policy(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    layers = paymaster.gateway.layers
    function = ledger_lambda(gateway_template, paymaster)
    variables = function["Environment"]["Variables"]

    assert function["Handler"] == "app.handler"
    assert function["Layers"] == [{"Ref": logical_id(layer)} for layer in (layers.core, layers.deps, layers.policy)]
    assert variables == {
        names.ENV_LEDGER_TABLE: import_of(state_template, logical_id(paymaster.state.tables.ledger), None),
        names.ENV_EVENT_BUS: import_of(state_template, logical_id(paymaster.state.events.bus), None),
        names.ENV_POLICY_FILE: POLICY_FILE,
    }
    environ = {names.ENV_LEDGER_TABLE: "<table>", names.ENV_EVENT_BUS: "<bus>", names.ENV_REGION: "eu-west-1"}
    settings = LedgerSettings.from_environ(environ)
    assert (settings.ledger_table, settings.event_bus) == ("<table>", "<bus>")


def test_ledger_reads_the_counters_stream_from_its_start_and_sets_aside_what_keeps_failing(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    state = paymaster.state
    stream_arn = import_of(state_template, logical_id(state.tables.counters), "StreamArn")
    failures_arn = import_of(state_template, logical_id(state.ledger_failures.queue), "Arn")

    assert event_source_of(gateway_template, paymaster.gateway.ledger.function) == {
        "EventSourceArn": stream_arn,
        "FunctionName": {"Ref": logical_id(paymaster.gateway.ledger.function)},
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": names.LEDGER_BATCH_SIZE,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "MaximumRetryAttempts": names.LEDGER_RETRY_ATTEMPTS,
        "BisectBatchOnFunctionError": True,
        "MaximumRecordAgeInSeconds": 6 * 3600,
        "DestinationConfig": {"OnFailure": {"Destination": failures_arn}},
    }


def test_ledger_role_may_read_the_stream_write_the_ledger_put_events_and_set_aside_failures_only(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    state = paymaster.state
    ledger_arn = import_of(state_template, logical_id(state.tables.ledger), "Arn")
    stream_arn = import_of(state_template, logical_id(state.tables.counters), "StreamArn")
    failures_arn = import_of(state_template, logical_id(state.ledger_failures.queue), "Arn")
    bus_arn = import_of(state_template, logical_id(state.events.bus), "Arn")
    statements = role_statements(gateway_template, paymaster.gateway.ledger.function)

    # TransactWriteItems' Put and Update items, and the alarm markers' GetItem (under `ALERT#`
    # only): no other read, no index, no counters table.
    assert_grants_exactly(
        statements,
        [
            own_logs(gateway_template, paymaster.gateway.ledger.function),
            (ledger_arn, {"dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:GetItem"}),
            (bus_arn, {"events:PutEvents"}),
            (stream_arn, {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"}),
            (failures_arn, {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}),
            ("*", {"dynamodb:ListStreams", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}),
        ],
    )
    [reads] = [s for s in statements if "dynamodb:GetItem" in as_list(s["Action"])]
    assert as_list(reads["Action"]) == ["dynamodb:GetItem"]
    assert reads["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{schema.ALERT_PREFIX}*"]}}


def test_the_gateway_may_read_the_ledgers_rollups_only_and_never_write_it(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    ledger_arn = import_of(state_template, logical_id(paymaster.state.tables.ledger), "Arn")
    statements = role_statements(gateway_template, paymaster.gateway.gateway.function)
    # The index's ARN is built from the table's (Fn::Join): any mention of the table is found.
    on_the_ledger = [s for s in statements if json.dumps(ledger_arn) in json.dumps(s["Resource"])]

    assert on_the_ledger == [
        {
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:Query"],
            "Resource": ledger_arn,
            "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["SPEND#*"]}},
        }
    ]
    assert not {action for s in statements if s["Resource"] == "*" for action in as_list(s["Action"])} & {
        "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
        "dynamodb:ConditionCheckItem", "dynamodb:Scan", "dynamodb:GetItem", "dynamodb:Query",
    }  # fmt: skip
    assert schema.rollup_pk("search", "2026-12", "app").startswith("SPEND#")
    assert not schema.calls_pk("search", "2026-12").startswith("SPEND#")


def test_the_gateway_may_put_prompt_records_and_never_read_them(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    prompts_arn = import_of(state_template, logical_id(paymaster.state.tables.prompts), "Arn")
    statements = role_statements(gateway_template, paymaster.gateway.gateway.function)

    assert allowed_on(statements, prompts_arn) == {"dynamodb:PutItem"}
    index_wildcard = joined(prompts_arn, "/index/*")
    assert allowed_on(statements, index_wildcard) == set()


def test_no_function_may_read_the_prompts(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    prompts_arn = import_of(state_template, logical_id(paymaster.state.tables.prompts), "Arn")
    allowed = {
        action
        for policy in gateway_template.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow" and prompts_arn in as_list(statement["Resource"])
        for action in as_list(statement["Action"])
    }
    assert allowed == {"dynamodb:PutItem"}


def test_the_ledger_failure_queue_keeps_two_weeks_encrypted_and_is_named_for_operators(
    state_template: Template, paymaster: Paymaster
) -> None:
    queue = paymaster.state.ledger_failures.queue
    properties = state_template.to_json()["Resources"][logical_id(queue)]["Properties"]

    assert properties["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert properties["SqsManagedSseEnabled"] is True
    state_template.has_output("LedgerFailureQueueUrl", {"Value": {"Ref": logical_id(queue)}})


# --- denials ledger function -------------------------------------------------------------


def test_the_denials_rule_routes_every_request_denied_on_the_bus_to_the_denials_queue(
    state_template: Template, paymaster: Paymaster
) -> None:
    denials = paymaster.state.denials
    rule = properties(state_template, denials.rule)

    assert rule["EventBusName"] == {"Ref": logical_id(paymaster.state.events.bus)}
    assert rule["EventPattern"] == {"source": [names.EVENT_SOURCE], "detail-type": [names.REQUEST_DENIED]}
    assert rule["State"] == "ENABLED"
    assert [target["Arn"] for target in rule["Targets"]] == [{"Fn::GetAtt": [logical_id(denials.queue), "Arn"]}]
    # The queue lets EventBridge send to it for this rule only.
    (allowed,) = [
        statement
        for policy in state_template.find_resources("AWS::SQS::QueuePolicy").values()
        if {"Ref": logical_id(denials.queue)} in policy["Properties"]["Queues"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
    ]
    assert allowed["Principal"] == {"Service": "events.amazonaws.com"}
    assert set(allowed["Action"]) == {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    assert allowed["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [logical_id(denials.rule), "Arn"]}}}


def test_the_denials_queue_keeps_two_weeks_and_dead_letters_after_max_receives(
    state_template: Template, paymaster: Paymaster
) -> None:
    denials = paymaster.state.denials
    resources = state_template.to_json()["Resources"]
    queue = resources[logical_id(denials.queue)]["Properties"]
    dead_letters = resources[logical_id(denials.dead_letter_queue)]["Properties"]

    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [logical_id(denials.dead_letter_queue), "Arn"]},
        "maxReceiveCount": names.DENIALS_MAX_RECEIVES,
    }
    for kept in (queue, dead_letters):
        assert kept["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert kept["SqsManagedSseEnabled"] is True
    assert queue["VisibilityTimeout"] == 6 * denial_queue.CONSUMER_TIMEOUT.to_seconds()
    state_template.has_output("DenialDeadLetterQueueUrl", {"Value": {"Ref": logical_id(denials.dead_letter_queue)}})


def test_the_denials_ledger_runs_its_handler_on_the_core_and_deps_layers_with_the_ledger_table_only(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    layers = paymaster.gateway.layers
    function = denials_lambda(gateway_template, paymaster)

    assert function["Handler"] == "app.handler"
    assert function["Layers"] == [{"Ref": logical_id(layer)} for layer in (layers.core, layers.deps)]
    variables = function["Environment"]["Variables"]
    assert variables == {
        names.ENV_LEDGER_TABLE: import_of(state_template, logical_id(paymaster.state.tables.ledger), None)
    }
    environ = {name: f"<{name}>" for name in variables}
    assert LedgerSettings.from_environ({**environ, names.ENV_REGION: "eu-west-1"}).ledger_table == (
        f"<{names.ENV_LEDGER_TABLE}>"
    )


def test_the_denials_ledger_reads_the_queue_in_batches_and_reports_each_denial_it_could_not_record(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    function = paymaster.gateway.ledger_denials.function
    assert event_source_of(gateway_template, function) == {
        "EventSourceArn": import_of(state_template, logical_id(paymaster.state.denials.queue), "Arn"),
        "FunctionName": {"Ref": logical_id(function)},
        "BatchSize": denial_queue.CONSUMER_BATCH_SIZE,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": ledger_denials.MAX_CONCURRENCY},
    }


def test_the_denials_ledger_role_may_write_the_ledger_and_consume_its_queue_only(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    state = paymaster.state
    statements = role_statements(gateway_template, paymaster.gateway.ledger_denials.function)

    assert_grants_exactly(
        statements,
        [
            own_logs(gateway_template, paymaster.gateway.ledger_denials.function),
            (
                import_of(state_template, logical_id(state.tables.ledger), "Arn"),
                {"dynamodb:UpdateItem", "dynamodb:PutItem"},
            ),
            (
                import_of(state_template, logical_id(state.denials.queue), "Arn"),
                {
                    "sqs:ReceiveMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                },
            ),
            ("*", {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}),
        ],
    )


def test_no_role_is_granted_a_wildcard_action(gateway_template: Template) -> None:
    actions = {
        action
        for policy in gateway_template.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
    }
    assert actions
    assert {action for action in actions if "*" in action} == set()


# --- state ------------------------------------------------------------------------------------


def test_state_lives_apart_from_the_gateway(state_template: Template, gateway_template: Template) -> None:
    state_types = {r["Type"] for r in state_template.to_json()["Resources"].values()}
    gateway_types = {r["Type"] for r in gateway_template.to_json()["Resources"].values()}
    assert state_types == {
        "AWS::DynamoDB::Table",
        "AWS::Events::EventBus",
        "AWS::Events::Archive",
        "AWS::Events::Rule",  # the denials rule: the queue's policy names it
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
        "AWS::KMS::Key",  # the ops topic's, and the topic with its subscriptions: they outlive deployments
        "AWS::SNS::Topic",
        "AWS::SNS::TopicPolicy",
        "AWS::SNS::Subscription",
        "AWS::SSM::Parameter",  # the names the gateway stack reads (state_parameters)
        "AWS::CloudWatch::Alarm",  # on its tables and dead-letter queues (operational_alarms)
    }
    assert {"AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard"} <= gateway_types
    # Each stack alarms on its own resources (operational_alarms); the teams' topics come with the
    # gateway (the policy names the teams), the ops topic with the state. Nothing else is in both.
    assert gateway_types & state_types == {
        "AWS::CloudWatch::Alarm",
        "AWS::SNS::Topic",
        "AWS::SNS::TopicPolicy",
        "AWS::SNS::Subscription",
    }


def test_everything_in_the_state_stack_is_retained_but_the_parameters_naming_it(state_template: Template) -> None:
    resources = state_template.to_json()["Resources"]
    assert {
        name
        for name, resource in resources.items()
        if resource | RETAINED != resource and resource["Type"] not in {"AWS::SSM::Parameter", "AWS::CloudWatch::Alarm"}
    } == set()
    # An alarm holds no data either: it watches the stack's resources and goes with them.
    # A retained parameter (its name is fixed) would block the stack's re-creation; it holds no data.
    for parameter in state_template.find_resources("AWS::SSM::Parameter").values():
        assert parameter["DeletionPolicy"] == "Delete"


def test_the_stacks_share_no_exports_so_the_state_stack_may_change_its_resources(
    state_template: Template, gateway_template: Template
) -> None:
    assert not [output for output in state_template.to_json().get("Outputs", {}).values() if "Export" in output]
    assert "Fn::ImportValue" not in json.dumps(gateway_template.to_json())


def test_the_gateway_stack_reads_every_state_name_from_a_parameter_the_state_stack_writes(
    state_template: Template, gateway_template: Template, paymaster: Paymaster
) -> None:
    written = {
        parameter["Properties"]["Name"]: parameter["Properties"]["Value"]
        for parameter in state_template.find_resources("AWS::SSM::Parameter").values()
    }
    read = {
        parameter["Default"]
        for parameter in gateway_template.to_json()["Parameters"].values()
        if parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
        and parameter["Default"].startswith(state_parameters.PARAMETER_PREFIX)
    }
    assert read == set(written)
    assert all(name.startswith("/paymaster/state/") for name in written)
    tables, queue = paymaster.state.tables, paymaster.state.settlements.queue
    assert written["/paymaster/state/counters/table-name"] == {"Ref": logical_id(tables.counters)}
    assert written["/paymaster/state/counters/stream-arn"] == {"Fn::GetAtt": [logical_id(tables.counters), "StreamArn"]}
    assert written["/paymaster/state/settlement_queue/queue-arn"] == {"Fn::GetAtt": [logical_id(queue), "Arn"]}
    # No export orders the deploys any more: the gateway stack depends on the state stack itself.
    assert paymaster.state in paymaster.gateway.dependencies


def test_tables_are_on_demand_recoverable_and_retained(state_template: Template) -> None:
    tables = state_template.find_resources("AWS::DynamoDB::Table")
    assert len(tables) == 3
    for table in tables.values():
        assert table | RETAINED == table
        properties = table["Properties"]
        assert properties["KeySchema"] == [
            {"AttributeName": schema.PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": schema.SORT_KEY, "KeyType": "RANGE"},
        ]
        assert {
            a["AttributeType"] for a in properties["AttributeDefinitions"] if a["AttributeName"] in ("pk", "sk")
        } == {"S"}
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert properties["DeletionProtectionEnabled"] is True


@pytest.mark.parametrize(
    "definition", [schema.COUNTERS, schema.LEDGER, schema.PROMPTS], ids=lambda table: table.construct_id
)
def test_each_table_is_deployed_as_the_schema_defines_it_and_the_local_stack_creates_it(
    state_template: Template, paymaster: Paymaster, definition: schema.Table
) -> None:
    """One definition: the CDK template's keys, indexes, stream and TTL are what
    `create_table_request` (what the local stack sends to moto) asks for."""
    tables = paymaster.state.tables
    table = {"counters": tables.counters, "ledger": tables.ledger, "prompts": tables.prompts}[
        definition.construct_id.lower()
    ]
    deployed = state_template.to_json()["Resources"][logical_id(table)]["Properties"]
    created = definition.create_table_request("local")

    assert deployed["KeySchema"] == created["KeySchema"]
    assert sorted(deployed["AttributeDefinitions"], key=str) == sorted(created["AttributeDefinitions"], key=str)
    assert deployed.get("GlobalSecondaryIndexes", []) == created.get("GlobalSecondaryIndexes", [])
    streamed = {"StreamViewType": created["StreamSpecification"]["StreamViewType"]} if definition.stream else None
    assert deployed.get("StreamSpecification") == streamed
    assert deployed["TimeToLiveSpecification"] == {
        "AttributeName": definition.ttl_request("local")["TimeToLiveSpecification"]["AttributeName"],
        "Enabled": True,
    }


def test_the_prompts_table_is_encrypted_with_kms_and_expires_its_records(
    state_template: Template, paymaster: Paymaster
) -> None:
    prompts = state_template.to_json()["Resources"][logical_id(paymaster.state.tables.prompts)]["Properties"]

    # CloudFormation: SSEEnabled alone is KMS with the AWS managed key (aws/dynamodb), not the
    # AWS owned key the other tables use, so every use of the key is in CloudTrail.
    assert prompts["SSESpecification"] == {"SSEEnabled": True}
    assert prompts["TimeToLiveSpecification"] == {"AttributeName": schema.TTL_ATTRIBUTE, "Enabled": True}
    assert "StreamSpecification" not in prompts  # nothing derives from it: no copy of the prompts travels on


def test_counters_stream_old_and_new_images_and_index_held_reservations_by_expiry(
    state_template: Template, paymaster: Paymaster
) -> None:
    counters = state_template.to_json()["Resources"][logical_id(paymaster.state.tables.counters)]["Properties"]

    assert counters["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert counters["TimeToLiveSpecification"] == {"AttributeName": schema.TTL_ATTRIBUTE, "Enabled": True}
    assert counters["GlobalSecondaryIndexes"] == [
        {
            "IndexName": schema.HELD_INDEX,
            "KeySchema": [
                {"AttributeName": schema.HELD_SHARD, "KeyType": "HASH"},
                {"AttributeName": schema.HELD_UNTIL, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ]


def test_the_archive_names_no_empty_kms_key_which_cloudformation_refuses(state_template: Template) -> None:
    [archive] = state_template.find_resources("AWS::Events::Archive").values()

    assert "KmsKeyIdentifier" not in archive["Properties"]


def test_event_bus_and_its_archive_are_retained(state_template: Template, paymaster: Paymaster) -> None:
    state_template.has_resource("AWS::Events::EventBus", RETAINED)
    state_template.has_resource(
        "AWS::Events::Archive",
        {
            **RETAINED,
            "Properties": Match.object_like(
                {
                    "SourceArn": {"Fn::GetAtt": [logical_id(paymaster.state.events.bus), "Arn"]},
                    "EventPattern": {"source": [names.EVENT_SOURCE]},
                    "RetentionDays": 365,
                }
            ),
        },
    )


def test_settlement_queue_keeps_messages_two_weeks_and_dead_letters_them_after_max_receives(
    state_template: Template, paymaster: Paymaster
) -> None:
    settlements = paymaster.state.settlements
    resources = state_template.to_json()["Resources"]
    queue = resources[logical_id(settlements.queue)]["Properties"]
    dead_letters = resources[logical_id(settlements.dead_letter_queue)]["Properties"]
    fourteen_days = 14 * 24 * 3600

    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [logical_id(settlements.dead_letter_queue), "Arn"]},
        "maxReceiveCount": names.SETTLEMENT_MAX_RECEIVES,
    }
    for properties in (queue, dead_letters):
        assert properties["MessageRetentionPeriod"] == fourteen_days
        assert properties["SqsManagedSseEnabled"] is True
        assert "KmsMasterKeyId" not in properties
        assert "FifoQueue" not in properties  # standard: settling is idempotent and order-free
    assert "RedrivePolicy" not in dead_letters


def test_settlement_queue_visibility_is_six_times_its_consumer_timeout(
    state_template: Template, paymaster: Paymaster
) -> None:
    queue = state_template.to_json()["Resources"][logical_id(paymaster.state.settlements.queue)]["Properties"]
    assert queue["VisibilityTimeout"] == 6 * settlement_queue.CONSUMER_TIMEOUT.to_seconds() == 720


def test_every_queue_refuses_requests_without_tls(state_template: Template, paymaster: Paymaster) -> None:
    settlements = paymaster.state.settlements
    policies = state_template.find_resources("AWS::SQS::QueuePolicy").values()
    tls_only = {
        queue["Ref"]
        for policy in policies
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
        and statement["Action"] == "sqs:*"
        and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for queue in policy["Properties"]["Queues"]
    }
    assert tls_only == {
        logical_id(settlements.queue),
        logical_id(settlements.dead_letter_queue),
        logical_id(paymaster.state.ledger_failures.queue),
        logical_id(paymaster.state.sweeper_dead_letters.queue),
        logical_id(paymaster.state.denials.queue),
        logical_id(paymaster.state.denials.dead_letter_queue),
        logical_id(paymaster.state.alarms.queue),
        logical_id(paymaster.state.alarms.dead_letter_queue),
    }


def test_state_outputs_name_the_dead_letter_queue_for_replay(state_template: Template, paymaster: Paymaster) -> None:
    dead_letters = logical_id(paymaster.state.settlements.dead_letter_queue)
    state_template.has_output("SettlementDeadLetterQueueUrl", {"Value": {"Ref": dead_letters}})
    state_template.has_output("SettlementDeadLetterQueueArn", {"Value": {"Fn::GetAtt": [dead_letters, "Arn"]}})


# --- cdk-nag ----------------------------------------------------------------------------------


def test_synth_passes_aws_solutions_checks_with_reasoned_acknowledgements(
    validation_report: dict[str, Any], paymaster: Paymaster
) -> None:
    (report,) = validation_report["pluginReports"]
    assert report["pluginName"] == "AwsSolutions"
    assert report["conclusion"] == "success"
    assert report["violations"] == []
    acknowledged = {v["ruleName"]: v["reason"] for v in report["suppressedViolations"]}
    assert set(acknowledged) == {
        "AwsSolutions-APIG2",
        "AwsSolutions-APIG3",
        "AwsSolutions-COG4",
        "AwsSolutions-L1",
        "AwsSolutions-SQS3",
        "AwsSolutions-IAM5[Resource::*]",
        # The forecast and digest may publish to the teams' alert topics (infra/paymaster_infra/schedules.py).
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sns:<AWS::Region>:<AWS::AccountId>:paymaster-alerts-*]",
        # Their schedules may invoke each scheduled function, its versions and aliases.
        *(
            f"AwsSolutions-IAM5[Resource::<{logical_id(function)}.Arn>:*]"
            for function in (
                paymaster.gateway.schedules.forecast,
                paymaster.gateway.schedules.digest,
                paymaster.gateway.schedules.month_close,
            )
        ),
        # The sweeper's schedule may invoke it, its versions and aliases (infra/paymaster_infra/sweeper.py).
        f"AwsSolutions-IAM5[Resource::<{logical_id(paymaster.gateway.sweeper.function)}.Arn>:*]",
        # …and each report schedule its function (infra/paymaster_infra/schedules.py).
        *(
            f"AwsSolutions-IAM5[Resource::<{logical_id(function)}.Arn>:*]"
            for function in (
                paymaster.gateway.schedules.forecast,
                paymaster.gateway.schedules.digest,
                paymaster.gateway.schedules.month_close,
            )
        ),
        # The forecast and digest may publish to every team's topic, named by one prefix.
        *(
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/{model}]"
            for model in DEMO_BEDROCK_MODELS
        ),
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AmazonAPIGatewayPushToCloudWatchLogs]",
    }
    assert all(len(reason) > 40 for reason in acknowledged.values())


def test_no_export_ties_the_stacks_together(state_template: Template, gateway_template: Template) -> None:
    """Every name the gateway stack uses from the state stack comes through SSM (state_parameters):
    an export would block changing what it names (a table replaced, a queue renamed)."""
    assert "Fn::ImportValue" not in json.dumps(gateway_template.to_json())
    assert [name for name, output in state_template.to_json().get("Outputs", {}).items() if "Export" in output] == []
