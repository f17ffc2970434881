"""Lambda Web Adapter: runs the gateway's ASGI app under uvicorn and streams its responses.

The Python managed runtime cannot stream a response itself; the adapter (a Lambda extension in a
public layer) starts `run.sh`, waits for the health path, then relays each invocation to the app
over HTTP and streams the answer back through `InvokeWithResponseStream`.
"""

from aws_cdk import CfnMapping, Stack, Token
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from paymaster_infra.config import ConfigError

LAYER_ACCOUNT = "753240598075"
LAYER_NAME = "LambdaAdapterLayerArm64"  # arm64, as lambda_defaults.ARCHITECTURE

# The adapter's layer version in each region the app may deploy to: AWS publishes it from one
# account (LAYER_ACCOUNT) in the commercial regions, the same version everywhere so far. Layer 28
# is adapter 1.0.x. To update: read the release's "Zip Packages" list in
# github.com/aws/aws-lambda-web-adapter (README), check a region with
# `aws lambda get-layer-version-by-arn --arn arn:aws:lambda:<region>:753240598075:layer:LambdaAdapterLayerArm64:<v>`,
# set the version here (per region if they differ), synth, and run tests/infra. A region missing
# here fails synth for a deploy file in it (and the deploy of an env-agnostic template there):
# add it after checking its ARN. China (aws-cn) publishes from other accounts: not listed.
LAYER_VERSIONS: dict[str, int] = {
    "us-east-1": 28,
    "us-east-2": 28,
    "us-west-1": 28,
    "us-west-2": 28,
    "ca-central-1": 28,
    "eu-central-1": 28,
    "eu-central-2": 28,
    "eu-west-1": 28,
    "eu-west-2": 28,
    "eu-west-3": 28,
    "eu-north-1": 28,
    "eu-south-1": 28,
    "ap-south-1": 28,
    "ap-northeast-1": 28,
    "ap-northeast-2": 28,
    "ap-northeast-3": 28,
    "ap-southeast-1": 28,
    "ap-southeast-2": 28,
    "sa-east-1": 28,
}

HANDLER = "run.sh"
APP_PORT = 8080
HEALTH_PATH = "/healthz"


def web_adapter_layer(scope: Construct) -> lambda_.ILayerVersion:
    """The adapter's layer in the stack's region: looked up in LAYER_VERSIONS at synth for a stack
    with a region, through a CloudFormation mapping of that table for an env-agnostic one."""
    stack = Stack.of(scope)
    if Token.is_unresolved(stack.region):
        mapping = CfnMapping(
            scope, "WebAdapterVersions", mapping={region: {"version": v} for region, v in LAYER_VERSIONS.items()}
        )
        version = mapping.find_in_map(stack.region, "version")
    elif stack.region in LAYER_VERSIONS:
        version = str(LAYER_VERSIONS[stack.region])
    else:
        raise ConfigError(
            f"no Lambda Web Adapter layer version for {stack.region}: add it to LAYER_VERSIONS in "
            "infra/paymaster_infra/web_adapter.py (the comment there says how)"
        )
    arn = f"arn:{stack.partition}:lambda:{stack.region}:{LAYER_ACCOUNT}:layer:{LAYER_NAME}:{version}"
    return lambda_.LayerVersion.from_layer_version_arn(scope, "WebAdapterLayer", arn)


def web_adapter_environment() -> dict[str, str]:
    return {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "PORT": str(APP_PORT),
        "AWS_LWA_READINESS_CHECK_PATH": HEALTH_PATH,
    }
