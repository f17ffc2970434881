"""The deploy file (one deployment: account, region, policy, API shape) and what the stacks make of it.

The validation tests need no synth; the file's effects are read from one extra synth of a file
that sets every field (module fixture), the defaults from the session's synth (conftest).
"""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cdk import App
from aws_cdk.assertions import Match, Template

from paymaster_infra.config import CONTEXT_DEPLOY_FILE, CONTEXT_POLICY_FILE, REPO_ROOT, AppConfig, ConfigError
from paymaster_infra.deploy_file import DeployFile, DeployFileError, load_deploy_file, main
from paymaster_infra.deployment import Paymaster, add_paymaster
from tests.infra.test_stacks import gateway_function, logical_id

EXAMPLE = REPO_ROOT / "deploy" / "example.yaml"

FULL: dict[str, Any] = {
    "account": "123456789012",
    "region": "eu-west-1",
    "policy_file": "policy/demo.yaml",
    "throttling": {"rate_per_s": 2500, "burst": 5000},
    "allowed_callers": {
        "organization_id": "o-a1b2c3d4e5",
        "organizational_unit_paths": ["o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/"],
        "accounts": ["210987654321"],
    },
    "log_retention": {"access_logs_days": 365, "function_logs_days": 30},
    "custom_domain": {
        "domain_name": "llm.example.com",
        "certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000",
        "hosted_zone": {"id": "Z0123456789ABCDEFGHIJ", "name": "example.com"},
    },
    "gateway_reserved_concurrency": 200,
    "require_approval": "never",
}


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def problems(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    with pytest.raises(DeployFileError) as raised:
        load_deploy_file(write(tmp_path, data))
    return raised.value.problems


# --- the file ---------------------------------------------------------------------------------


def test_the_committed_example_is_valid_and_holds_the_defaults() -> None:
    example = load_deploy_file(EXAMPLE)
    defaults = DeployFile(account=example.account, region=example.region, policy_file=example.policy_file)
    assert example == defaults
    assert (REPO_ROOT / example.policy_file).is_file()


def test_a_file_with_only_account_region_and_policy_gets_today_s_api(tmp_path: Path) -> None:
    deploy = load_deploy_file(write(tmp_path, {k: FULL[k] for k in ("account", "region", "policy_file")}))
    assert (deploy.throttling.rate_per_s, deploy.throttling.burst) == (100, 200)
    assert not deploy.allowed_callers.restricted
    assert (deploy.log_retention.access_logs_days, deploy.log_retention.function_logs_days) == (90, 90)
    assert deploy.custom_domain is None
    assert deploy.gateway_reserved_concurrency is None
    assert deploy.require_approval == "broadening"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"account": "12345"}, "account"),
        ({"region": "Europe"}, "region"),
        ({"throttling": {"rate_per_s": 0}}, "throttling.rate_per_s"),
        ({"throttling": {"burst": -1}}, "throttling.burst"),
        ({"allowed_callers": {"organization_id": "my-org"}}, "allowed_callers.organization_id"),
        ({"allowed_callers": {"organizational_unit_paths": ["ou-1"]}}, "allowed_callers.organizational_unit_paths.0"),
        ({"allowed_callers": {"accounts": ["1234"]}}, "allowed_callers.accounts.0"),
        ({"log_retention": {"access_logs_days": 45}}, "log_retention.access_logs_days"),
        ({"log_retention": {"function_logs_days": 0}}, "log_retention.function_logs_days"),
        ({"custom_domain": {"domain_name": "llm.a.org", "certificate_arn": "c"}}, "custom_domain.certificate_arn"),
        ({"custom_domain": {**FULL["custom_domain"], "hosted_zone": {"id": "Z1", "name": "a.org"}}}, "custom_domain"),
        ({"gateway_reserved_concurrency": 0}, "gateway_reserved_concurrency"),
        ({"require_approval": "sometimes"}, "require_approval"),
        ({"ops_emails": ["oncall@"]}, "ops_emails.0"),
        ({"policy_file": "/etc/policy.yaml"}, "policy_file"),
        ({"regoin": "eu-west-1"}, "regoin"),
    ],
)  # fmt: skip
def test_a_bad_value_is_refused_naming_its_field(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    found = problems(tmp_path, {**FULL, **change})
    assert [problem.split(": ", 1)[0] for problem in found] == [field]


def test_a_missing_required_field_is_named(tmp_path: Path) -> None:
    assert [p.split(": ", 1)[0] for p in problems(tmp_path, {"region": "eu-west-1"})] == ["account", "policy_file"]


def test_a_file_that_is_not_a_mapping_says_so(tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text("- account\n")
    with pytest.raises(DeployFileError, match="must be a mapping"):
        load_deploy_file(path)


def test_make_deploy_reads_require_approval_and_check_fails_on_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["get", str(write(tmp_path, FULL)), "require_approval"]) == 0
    assert capsys.readouterr().out == "never\n"
    assert main(["check", str(write(tmp_path, {**FULL, "throttling": {"burst": 0}}))]) == 1
    assert "throttling.burst" in capsys.readouterr().err


def test_the_app_reads_the_deploy_file_from_context_and_its_policy_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    config = AppConfig.from_context(App(context={CONTEXT_DEPLOY_FILE: str(path)}).node)
    assert config.deploy_file is not None
    assert config.deploy_file.account == "123456789012"
    assert config.policy_file == REPO_ROOT / "policy" / "demo.yaml"

    assert config.ops_emails == ()
    with_ops = write(tmp_path, {**FULL, "ops_emails": ["oncall@example.com"]})
    assert AppConfig.from_context(App(context={CONTEXT_DEPLOY_FILE: str(with_ops)}).node).ops_emails == (
        "oncall@example.com",
    )

    with pytest.raises(ConfigError, match=r"throttling\.burst"):
        AppConfig.from_context(
            App(context={CONTEXT_DEPLOY_FILE: str(write(tmp_path, {**FULL, "throttling": {"burst": 0}}))}).node
        )
    with pytest.raises(ConfigError, match="policy_file"):
        AppConfig.from_context(App(context={CONTEXT_DEPLOY_FILE: str(path), CONTEXT_POLICY_FILE: "x.yaml"}).node)


def test_without_a_deploy_file_the_app_is_env_agnostic_with_the_demo_policy() -> None:
    config = AppConfig.from_context(App().node)
    assert config.deploy_file is None
    assert config.policy_file == REPO_ROOT / "policy" / "demo.yaml"


# --- what the stacks make of it -------------------------------------------------------------


@pytest.fixture(scope="module")
def deployed(config: AppConfig, tmp_path_factory: pytest.TempPathFactory) -> Paymaster:
    """The app synthesised for FULL (cdk-nag runs, and must pass, on this shape too)."""
    from aws_cdk import Environment  # noqa: PLC0415

    deploy = DeployFile.model_validate(FULL)
    app = App(outdir=str(tmp_path_factory.mktemp("cdk.out.full")))
    full = AppConfig(
        deps_dir=config.deps_dir,
        policy_file=REPO_ROOT / deploy.policy_file,
        tokenizers_dir=config.tokenizers_dir,
        staging_dir=tmp_path_factory.mktemp("staging-full"),
        deployment=deploy,
    )
    paymaster = add_paymaster(app, full, env=Environment(account=deploy.account, region=deploy.region))
    app.synth()
    return paymaster


@pytest.fixture(scope="module")
def full_template(deployed: Paymaster) -> Template:
    return Template.from_stack(deployed.gateway)


def stage(template: Template) -> dict[str, Any]:
    (found,) = template.find_resources("AWS::ApiGateway::Stage").values()
    properties: dict[str, Any] = found["Properties"]
    return properties


def rest_api(template: Template) -> dict[str, Any]:
    (found,) = template.find_resources("AWS::ApiGateway::RestApi").values()
    properties: dict[str, Any] = found["Properties"]
    return properties


def test_both_stacks_go_to_the_file_s_account_and_region(deployed: Paymaster) -> None:
    for stack in (deployed.state, deployed.gateway):
        assert (stack.account, stack.region) == ("123456789012", "eu-west-1")


def test_the_web_adapter_layer_is_the_file_s_region_s_version_from_the_table(
    full_template: Template, deployed: Paymaster
) -> None:
    from paymaster_infra import web_adapter  # noqa: PLC0415

    layer = (
        f"arn:aws:lambda:eu-west-1:753240598075:layer:LambdaAdapterLayerArm64:{web_adapter.LAYER_VERSIONS['eu-west-1']}"
    )
    layers = gateway_function(full_template, deployed)["Layers"]
    assert [entry for entry in layers if "LambdaAdapterLayer" in json.dumps(entry)] in (
        [layer],
        [{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, layer.removeprefix("arn:aws")]]}],
    )
    assert "Mappings" not in full_template.to_json()


def test_the_stage_is_throttled_as_the_file_says_and_by_default_as_before(
    full_template: Template, gateway_template: Template
) -> None:
    (full,) = stage(full_template)["MethodSettings"]
    assert (full["ThrottlingRateLimit"], full["ThrottlingBurstLimit"]) == (2500, 5000)
    (default,) = stage(gateway_template)["MethodSettings"]
    assert (default["ThrottlingRateLimit"], default["ThrottlingBurstLimit"]) == (100, 200)


def test_log_groups_keep_what_the_file_says_access_and_function_logs_apart(
    full_template: Template, gateway_template: Template, deployed: Paymaster, paymaster: Paymaster
) -> None:
    def retention(template: Template, log_group: Any) -> int:
        days: int = template.to_json()["Resources"][logical_id(log_group)]["Properties"]["RetentionInDays"]
        return days

    access = deployed.gateway.api.api.deployment_stage
    assert access is not None
    full_access = [g for g in deployed.gateway.api.node.find_all() if g.node.id == "AccessLogs"]
    assert retention(full_template, full_access[0]) == 365
    functions = [deployed.gateway.gateway, deployed.gateway.ledger, deployed.gateway.sweeper]
    assert {retention(full_template, f.function.log_group) for f in functions} == {30}

    default_access = [g for g in paymaster.gateway.api.node.find_all() if g.node.id == "AccessLogs"]
    assert retention(gateway_template, default_access[0]) == 90
    assert retention(gateway_template, paymaster.gateway.gateway.function.log_group) == 90


def test_the_gateway_s_concurrency_is_reserved_only_when_the_file_says(
    full_template: Template, gateway_template: Template, deployed: Paymaster, paymaster: Paymaster
) -> None:
    assert gateway_function(full_template, deployed)["ReservedConcurrentExecutions"] == 200
    assert "ReservedConcurrentExecutions" not in gateway_function(gateway_template, paymaster)
    # Only the gateway's: the other functions keep sharing the account's pool.
    reserved = [
        f for f in full_template.find_resources("AWS::Lambda::Function").values()
        if "ReservedConcurrentExecutions" in f["Properties"]
    ]  # fmt: skip
    assert len(reserved) == 1


def test_without_allowed_callers_the_api_has_no_resource_policy(gateway_template: Template) -> None:
    assert "Policy" not in rest_api(gateway_template)


def test_allowed_callers_make_a_resource_policy_that_denies_everyone_else(full_template: Template) -> None:
    statements = {s.pop("Sid"): s for s in rest_api(full_template)["Policy"]["Statement"]}
    invoke = {"Action": "execute-api:Invoke", "Principal": {"AWS": "*"}, "Resource": "execute-api:/*"}
    assert statements["InOrganization"] == {
        **invoke,
        "Effect": "Allow",
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}},
    }
    assert statements["InOrganizationalUnits"] == {
        **invoke,
        "Effect": "Allow",
        "Condition": {"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": ["o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/*"]}},
    }
    assert statements["InAccounts"] == {
        **invoke,
        "Effect": "Allow",
        "Condition": {"StringEquals": {"aws:PrincipalAccount": ["210987654321"]}},
    }
    # Denied unless in the organization, in an OU, in a listed account or in this one (whose
    # principals call through their own IAM policies): the conditions of one statement all hold.
    assert statements["DenyEveryoneElse"] == {
        **invoke,
        "Effect": "Deny",
        "Condition": {
            "StringNotEquals": {
                "aws:PrincipalOrgID": "o-a1b2c3d4e5",
                "aws:PrincipalAccount": ["210987654321", "123456789012"],
            },
            "ForAllValues:StringNotLike": {"aws:PrincipalOrgPaths": ["o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/*"]},
        },
    }
    assert len(statements) == 4


def test_the_custom_domain_maps_the_stage_at_its_root_with_an_alias_in_the_zone(
    full_template: Template, gateway_template: Template, deployed: Paymaster
) -> None:
    full_template.has_resource_properties(
        "AWS::ApiGateway::DomainName",
        {
            "DomainName": "llm.example.com",
            "RegionalCertificateArn": FULL["custom_domain"]["certificate_arn"],
            "EndpointConfiguration": {"Types": ["REGIONAL"]},
            "SecurityPolicy": "TLS_1_2",
        },
    )
    (mapping,) = full_template.find_resources("AWS::ApiGateway::BasePathMapping").values()
    assert mapping["Properties"]["RestApiId"] == {"Ref": logical_id(deployed.gateway.api.api)}
    assert "BasePath" not in mapping["Properties"]  # https://llm.example.com/v1/…
    full_template.has_resource_properties(
        "AWS::Route53::RecordSet",
        {
            "Name": "llm.example.com.",
            "Type": "A",
            "HostedZoneId": "Z0123456789ABCDEFGHIJ",
            "AliasTarget": Match.any_value(),
        },
    )
    assert full_template.find_outputs("*", {"Value": "https://llm.example.com/v1"})
    assert not gateway_template.find_resources("AWS::ApiGateway::DomainName")


def test_a_domain_without_a_zone_gets_no_dns_record(config: AppConfig, tmp_path: Path) -> None:
    """No synth: the construct alone, in a stack of its own."""
    from aws_cdk import Stack  # noqa: PLC0415
    from aws_cdk import aws_lambda as lambda_  # noqa: PLC0415

    from paymaster_infra.deploy_file import CustomDomain, Defaults  # noqa: PLC0415
    from paymaster_infra.gateway_api import GatewayApi  # noqa: PLC0415

    stack = Stack(App(), "Api")
    handler = lambda_.Function(
        stack, "F", runtime=lambda_.Runtime.PYTHON_3_13, handler="x.y", code=lambda_.Code.from_inline("x")
    )
    domain = {k: v for k, v in FULL["custom_domain"].items() if k != "hosted_zone"}
    GatewayApi(stack, "A", handler=handler, deployment=Defaults(custom_domain=CustomDomain.model_validate(domain)))
    template = Template.from_stack(stack)
    assert template.find_resources("AWS::ApiGateway::DomainName")
    assert not template.find_resources("AWS::Route53::RecordSet")
    template.has_output("*", {"Value": {"Fn::GetAtt": [Match.any_value(), "RegionalDomainName"]}})
