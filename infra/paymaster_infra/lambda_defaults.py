"""Lambda defaults, in one place: every paymaster function and layer is made here."""

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from paymaster_infra.nag import acknowledge

# Must match paymaster_infra.target, which the dependencies layer is built for.
RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64

MEMORY_MB = 1024
# The gateway's: streamed completions run for minutes; API Gateway's streaming integration allows
# up to 15. Functions that need less say so (`default_function(timeout=...)`).
TIMEOUT = Duration.minutes(5)
LOG_RETENTION = logs.RetentionDays.THREE_MONTHS

ASSET_EXCLUDES = ["**/__pycache__", "**/*.pyc"]
# The entry point of every function that Lambda invokes with an event (`functions/<name>/app.py`).
EVENT_HANDLER = "app.handler"


def default_function(
    scope: Construct,
    construct_id: str,
    *,
    description: str,
    code_dir: Path,
    handler: str,
    layers: Sequence[lambda_.ILayerVersion],
    environment: Mapping[str, str],
    timeout: Duration = TIMEOUT,
) -> lambda_.Function:
    """A function with the house defaults: arm64, JSON logs into its own log group, X-Ray on;
    its code the folder `code_dir` (`functions/<name>`).

    Its role may write to its own log group only: CreateLogStream and PutLogEvents on that group
    (the log group exists, so no CreateLogGroup), where AWSLambdaBasicExecutionRole, CDK's
    default, would let it write to, and create, every log group of the account.
    """
    log_group = logs.LogGroup(scope, f"{construct_id}Logs", retention=LOG_RETENTION)
    role = iam.Role(
        scope,
        f"{construct_id}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"paymaster: {description}"[:1000],
    )
    log_group.grant_write(role)
    function = lambda_.Function(
        scope,
        construct_id,
        description=description,
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        memory_size=MEMORY_MB,
        timeout=timeout,
        tracing=lambda_.Tracing.ACTIVE,
        logging_format=lambda_.LoggingFormat.JSON,
        log_group=log_group,
        code=lambda_.Code.from_asset(str(code_dir), exclude=ASSET_EXCLUDES),
        handler=handler,
        layers=list(layers),
        environment=dict(environment),
        role=role,
    )
    acknowledge(
        function,
        {
            "AwsSolutions-L1": (
                f"Pinned to {RUNTIME.name}: the dependencies layer holds wheels built for it "
                "(paymaster_infra.target); runtime and layer move together."
            ),
        },
    )
    # The role's default policy (with every later grant) lives under the role, not the function.
    acknowledge(
        role,
        {
            "AwsSolutions-IAM5[Resource::*]": (
                "Active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no "
                "resource-level permissions."
            ),
        },
    )
    return function


def default_layer(scope: Construct, construct_id: str, *, description: str, asset_dir: str) -> lambda_.LayerVersion:
    """A layer from a folder whose top level is what Lambda mounts under /opt."""
    return lambda_.LayerVersion(
        scope,
        construct_id,
        description=description,
        code=lambda_.Code.from_asset(asset_dir, exclude=ASSET_EXCLUDES),
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[ARCHITECTURE],
    )
