"""The REST API in front of the gateway: IAM-signed calls only, responses streamed."""

import json

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from constructs import Construct

from paymaster_infra.deploy_file import AllowedCallers, CustomDomain, Deployment
from paymaster_infra.lambda_defaults import set_retention
from paymaster_infra.nag import acknowledge

STAGE_NAME = "prod"
API_PREFIX = "v1"
# The whole API's ceiling (every caller together) is the deploy file's `throttling`, 100 requests/s
# with bursts of 200 by default; per-team limits are the gateway's job.
INVOKE = "execute-api:Invoke"
# In an API's resource policy, every method of every stage of this API.
EVERY_METHOD = "execute-api:/*"

# API Gateway's own refusals (bad signature, throttled, …) in OpenAI's error shape, so that SDKs
# show the reason and retry a 429 as they would a provider's.
_OPENAI_ERROR = (
    '{"error": {"message": $context.error.messageString, '
    '"type": "$context.error.responseType", "param": null, "code": null}}'
)

_PUSH_TO_CLOUDWATCH_POLICY = "arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"

_F = apigateway.AccessLogField
_ACCESS_LOG_FIELDS = {
    "requestId": _F.context_request_id(),
    "extendedRequestId": _F.context_extended_request_id(),
    "requestTime": _F.context_request_time(),
    "httpMethod": _F.context_http_method(),
    "path": _F.context_path(),
    "status": _F.context_status(),
    "responseLength": _F.context_response_length(),
    "responseLatency": _F.context_response_latency(),
    "integrationStatus": _F.context_integration_status(),
    "integrationLatency": _F.context_integration_latency(),
    "integrationError": _F.context_integration_error_message(),
    "error": _F.context_error_message(),
    "userArn": _F.context_identity_user_arn(),
    "accountId": _F.context_identity_account_id(),
    "sourceIp": _F.context_identity_source_ip(),
    "userAgent": _F.context_identity_user_agent(),
    "xrayTraceId": _F.context_xray_trace_id(),
}


class GatewayApi(Construct):
    """`ANY /v1/{proxy+}` → the gateway function, AWS_IAM on every method, streamed.

    The caller's verified IAM identity reaches the function in the request context; callers
    need `execute-api:Invoke` on `invoke_arn`.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, handler: lambda_.Function, deployment: Deployment
    ) -> None:
        super().__init__(scope, construct_id)
        access_logs = logs.LogGroup(self, "AccessLogs")
        set_retention(access_logs, deployment.log_retention.access_logs_days)
        throttling = deployment.throttling
        self.api = apigateway.RestApi(
            self,
            "Api",
            description="paymaster: OpenAI-compatible, IAM-signed LLM gateway",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # Access and execution logs need API Gateway's account-level CloudWatch role.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            default_method_options=apigateway.MethodOptions(authorization_type=apigateway.AuthorizationType.IAM),
            policy=caller_policy(deployment.allowed_callers, account=Stack.of(self).account),
            deploy_options=apigateway.StageOptions(
                stage_name=STAGE_NAME,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                # Request bodies are prompts: never copy them into execution logs.
                data_trace_enabled=False,
                throttling_rate_limit=throttling.rate_per_s,
                throttling_burst_limit=throttling.burst,
                access_log_destination=apigateway.LogGroupLogDestination(access_logs),
                access_log_format=apigateway.AccessLogFormat.custom(json.dumps(_ACCESS_LOG_FIELDS)),
            ),
        )
        for response_type in (
            apigateway.ResponseType.DEFAULT_4_XX,
            apigateway.ResponseType.DEFAULT_5_XX,
        ):
            self.api.add_gateway_response(
                f"OpenAiError{response_type.response_type}",
                type=response_type,
                templates={"application/json": _OPENAI_ERROR},
            )

        integration = apigateway.LambdaIntegration(
            handler,
            proxy=True,
            response_transfer_mode=apigateway.ResponseTransferMode.STREAM,
            # Streaming lifts the 29 s limit; wait as long as the function may run.
            timeout=handler.timeout,
            allow_test_invoke=False,
        )
        self.api.root.add_resource(API_PREFIX).add_proxy(any_method=True, default_integration=integration)

        self.url = self.api.url_for_path(f"/{API_PREFIX}")
        self.invoke_arn = self.api.arn_for_execute_api("*", f"/{API_PREFIX}/*", STAGE_NAME)
        self.domain = None if deployment.custom_domain is None else self._custom_domain(deployment.custom_domain)

        acknowledge(
            self.api,
            {
                "AwsSolutions-APIG2": (
                    "The only route is an ANY proxy serving bodied POSTs and bodyless GETs, so "
                    "no single API Gateway body model fits; the gateway validates each OpenAI "
                    "request against its own models and answers in OpenAI's error shape."
                ),
                "AwsSolutions-APIG3": (
                    "Every method requires a SigV4 signature from an IAM principal and the stage "
                    "is throttled; a WAF web ACL would add cost without blocking anything the "
                    "IAM check lets through."
                ),
                "AwsSolutions-COG4": (
                    "Callers are internal apps with IAM roles: AWS_IAM is the authorizer by "
                    "design (identity comes from IAM, never from the request)."
                ),
                f"AwsSolutions-IAM4[Policy::{_PUSH_TO_CLOUDWATCH_POLICY}]": (
                    "API Gateway's account-level logging role; this AWS managed policy is the "
                    "permission set AWS documents for it."
                ),
            },
        )

    def _custom_domain(self, custom: CustomDomain) -> apigateway.DomainName:
        """`https://<domain_name>/v1/…` → this API's stage (base path mapping at the root), TLS 1.2;
        an alias record in the hosted zone when one is given."""
        domain = apigateway.DomainName(
            self,
            "Domain",
            domain_name=custom.domain_name,
            certificate=acm.Certificate.from_certificate_arn(self, "Certificate", custom.certificate_arn),
            endpoint_type=apigateway.EndpointType.REGIONAL,
            security_policy=apigateway.SecurityPolicy.TLS_1_2,
        )
        apigateway.BasePathMapping(
            self, "Mapping", domain_name=domain, rest_api=self.api, stage=self.api.deployment_stage
        )
        if custom.hosted_zone is not None:
            zone = route53.HostedZone.from_hosted_zone_attributes(
                self, "Zone", hosted_zone_id=custom.hosted_zone.id, zone_name=custom.hosted_zone.name
            )
            route53.ARecord(
                self,
                "Alias",
                zone=zone,
                record_name=custom.domain_name,
                target=route53.RecordTarget.from_alias(route53_targets.ApiGatewayDomain(domain)),
            )
        CfnOutput(
            self,
            "DomainUrl",
            value=f"https://{custom.domain_name}/{API_PREFIX}",
            description="OpenAI base_url on the custom domain (sign for execute-api as with ApiUrl)",
        )
        CfnOutput(
            self,
            "RegionalDomainName",
            value=domain.domain_name_alias_domain_name,
            description="Point the custom domain's DNS record (CNAME or alias) here",
        )
        return domain


def caller_policy(allowed: AllowedCallers, *, account: str) -> iam.PolicyDocument | None:
    """The API's resource policy: None when the deploy file restricts nothing. Otherwise callers in
    the organization, in one of the OUs, or in one of the accounts may invoke (each a statement),
    and a Deny refuses every principal that is in none of them — nor in this account, whose
    principals (`account`, the stack's) keep calling through their own IAM policies (they need no
    Allow here).

    IAM still authorises every call (AWS_IAM on every method): a cross-account caller needs
    `execute-api:Invoke` in its own role's policy as well as this Allow.
    """
    if not allowed.restricted:
        return None
    anyone = [iam.AnyPrincipal()]
    allows: list[iam.PolicyStatement] = []
    outside: dict[str, dict[str, str | list[str]]] = {}
    if allowed.organization_id:
        org = {"aws:PrincipalOrgID": allowed.organization_id}
        allows.append(_allow(anyone, {"StringEquals": org}, "InOrganization"))
        outside["StringNotEquals"] = {**outside.get("StringNotEquals", {}), **org}
    if allowed.organizational_unit_paths:
        paths = {"aws:PrincipalOrgPaths": [f"{path}*" for path in allowed.organizational_unit_paths]}
        allows.append(_allow(anyone, {"ForAnyValue:StringLike": paths}, "InOrganizationalUnits"))
        outside["ForAllValues:StringNotLike"] = paths
    if allowed.accounts:
        allows.append(_allow(anyone, {"StringEquals": {"aws:PrincipalAccount": list(allowed.accounts)}}, "InAccounts"))
    outside["StringNotEquals"] = {
        **outside.get("StringNotEquals", {}),
        "aws:PrincipalAccount": [*allowed.accounts, account],
    }
    deny = iam.PolicyStatement(
        sid="DenyEveryoneElse",
        effect=iam.Effect.DENY,
        principals=anyone,
        actions=[INVOKE],
        resources=[EVERY_METHOD],
        conditions=outside,
    )
    return iam.PolicyDocument(statements=[*allows, deny])


def _allow(
    principals: list[iam.IPrincipal], conditions: dict[str, dict[str, str | list[str]]], sid: str
) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid=sid, principals=principals, actions=[INVOKE], resources=[EVERY_METHOD], conditions=conditions
    )
