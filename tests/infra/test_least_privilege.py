"""Least privilege across the stacks: each function's role holds only what its code sends.

The exact grants of each function are pinned beside it (test_stacks.py, test_sweeper.py); these
tests hold for every function the stacks have, including ones added later.
"""

import json
from typing import Any

from aws_cdk.assertions import Template

from paymaster_infra.deployment import Paymaster
from paymaster_infra.operational_alarms import functions_of
from tests.infra.test_stacks import LOG_WRITES, as_list, logical_id, own_logs, properties, role_statements

# What the gateway's code sends, every service of it: the counters, the ledger's rollups, prompt
# records, the bus, the settlement queue, the policy's models and provider keys, logs and traces.
GATEWAY_ACTIONS = {
    *LOG_WRITES,
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "dynamodb:UpdateItem",
    "dynamodb:PutItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:GetItem",
    "events:PutEvents",
    "sqs:SendMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "bedrock:InvokeModel",
    "bedrock:InvokeModelWithResponseStream",
    "secretsmanager:GetSecretValue",
}
# Actions that support no resource-level permission, the only ones granted on "*".
ON_ANY_RESOURCE = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "dynamodb:ListStreams"}


def all_statements(*templates: Template) -> list[dict[str, Any]]:
    return [
        statement
        for template in templates
        for policy in template.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_each_function_writes_its_own_log_group_only_and_holds_no_managed_policy(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    resources = gateway_template.to_json()["Resources"]
    functions = functions_of(paymaster.gateway)
    assert len(functions) >= 5
    for function in functions:
        role = resources[logical_id(function.role)]["Properties"]
        assert "ManagedPolicyArns" not in role, function.node.path
        log_group, actions = own_logs(gateway_template, function)
        on_logs = [
            s
            for s in role_statements(gateway_template, function)
            if any(a.startswith("logs:") for a in as_list(s["Action"]))
        ]
        assert on_logs == [{"Effect": "Allow", "Action": sorted(actions), "Resource": log_group}], function.node.path
        # The log group the function writes to is the one its logging config names.
        assert properties(gateway_template, function)["LoggingConfig"]["LogGroup"]["Ref"] == log_group["Fn::GetAtt"][0]


def test_the_gateway_holds_only_what_its_code_sends_and_never_publishes_to_sns_or_invokes_functions(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    statements = role_statements(gateway_template, paymaster.gateway.gateway.function)
    actions = {action for s in statements if s["Effect"] == "Allow" for action in as_list(s["Action"])}
    assert actions == GATEWAY_ACTIONS
    assert not {a for a in actions if a.split(":")[0] in ("sns", "lambda", "kms", "iam", "cloudwatch")}


def test_only_the_gateway_may_invoke_models_or_read_provider_keys(
    gateway_template: Template, paymaster: Paymaster
) -> None:
    for function in functions_of(paymaster.gateway):
        if function is paymaster.gateway.gateway.function:
            continue
        actions = {a for s in role_statements(gateway_template, function) for a in as_list(s["Action"])}
        assert not {a for a in actions if a.startswith(("bedrock:", "secretsmanager:"))}, function.node.path


def test_no_grant_is_on_every_resource_but_those_aws_allows_no_other_way(
    gateway_template: Template, state_template: Template
) -> None:
    statements = all_statements(gateway_template, state_template)
    on_star = {a for s in statements if "*" in as_list(s["Resource"]) for a in as_list(s["Action"])}
    assert on_star == ON_ANY_RESOURCE


def test_a_wildcard_in_a_resource_is_only_a_bedrock_model_in_any_region_or_the_sweeper_s_versions(
    gateway_template: Template, state_template: Template, paymaster: Paymaster
) -> None:
    sweeper = logical_id(paymaster.gateway.sweeper.function)
    wildcards = set()
    for statement in all_statements(gateway_template, state_template):
        for resource in as_list(statement["Resource"]):
            text = json.dumps(resource)
            if "*" in text and resource != "*":
                wildcards.add(text)
    assert wildcards
    for text in wildcards:
        # An inference profile routes to its models in any of its regions (provider_access.py).
        model_in_any_region = '":bedrock:*::foundation-model/' in text and text.count("*") == 1
        sweeper_versions = text == json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [sweeper, "Arn"]}, ":*"]]})
        assert model_in_any_region or sweeper_versions, text
