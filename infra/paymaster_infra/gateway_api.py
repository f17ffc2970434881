"""The REST API in front of the gateway: IAM-signed calls only, responses streamed."""

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from paymaster_infra.lambda_defaults import LOG_RETENTION
from paymaster_infra.nag import acknowledge

STAGE_NAME = "prod"
API_PREFIX = "v1"
# A ceiling for the whole API, well above any single team; per-team limits are the gateway's job.
THROTTLE_RATE_PER_S = 100
THROTTLE_BURST = 200

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

    def __init__(self, scope: Construct, construct_id: str, *, handler: lambda_.Function) -> None:
        super().__init__(scope, construct_id)
        access_logs = logs.LogGroup(self, "AccessLogs", retention=LOG_RETENTION)
        self.api = apigateway.RestApi(
            self,
            "Api",
            description="paymaster: OpenAI-compatible, IAM-signed LLM gateway",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # Access and execution logs need API Gateway's account-level CloudWatch role.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            default_method_options=apigateway.MethodOptions(authorization_type=apigateway.AuthorizationType.IAM),
            deploy_options=apigateway.StageOptions(
                stage_name=STAGE_NAME,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                # Request bodies are prompts: never copy them into execution logs.
                data_trace_enabled=False,
                throttling_rate_limit=THROTTLE_RATE_PER_S,
                throttling_burst_limit=THROTTLE_BURST,
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
