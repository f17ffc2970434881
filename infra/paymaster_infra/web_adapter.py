"""Lambda Web Adapter: runs the gateway's ASGI app under uvicorn and streams its responses.

The Python managed runtime cannot stream a response itself; the adapter (a Lambda extension in a
public layer) starts `run.sh`, waits for the health path, then relays each invocation to the app
over HTTP and streams the answer back through `InvokeWithResponseStream`.
"""

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

# Layer 28 is adapter 1.0.x (github.com/aws/aws-lambda-web-adapter, "Zip Packages"); bump the
# version here only. The arm64 layer matches lambda_defaults.ARCHITECTURE.
LAYER_ACCOUNT = "753240598075"
LAYER_NAME = "LambdaAdapterLayerArm64"
LAYER_VERSION = 28

HANDLER = "run.sh"
APP_PORT = 8080
HEALTH_PATH = "/healthz"


def web_adapter_layer(scope: Construct) -> lambda_.ILayerVersion:
    """The adapter's layer in the stack's own region (a token when the stack is env-agnostic)."""
    arn = Stack.of(scope).format_arn(
        service="lambda",
        account=LAYER_ACCOUNT,
        resource="layer",
        resource_name=f"{LAYER_NAME}:{LAYER_VERSION}",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    return lambda_.LayerVersion.from_layer_version_arn(scope, "WebAdapterLayer", arn)


def web_adapter_environment() -> dict[str, str]:
    return {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "PORT": str(APP_PORT),
        "AWS_LWA_READINESS_CHECK_PATH": HEALTH_PATH,
    }
