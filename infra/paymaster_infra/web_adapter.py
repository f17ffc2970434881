"""Lambda Web Adapter: runs the gateway's ASGI app under uvicorn and streams its responses.

The Python managed runtime cannot stream a response itself; the adapter (a Lambda extension in a
public layer) starts `run.sh`, waits for the health path, then relays each invocation to the app
over HTTP and streams the answer back through `InvokeWithResponseStream`.
"""

import sys
from typing import Any

from aws_cdk import CfnMapping, Stack, Token
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from paymaster_infra.config import ConfigError

LAYER_ACCOUNT = "753240598075"
LAYER_NAME = "LambdaAdapterLayerArm64"  # arm64, as lambda_defaults.ARCHITECTURE

# The adapter's layer version in each region the app may deploy to. AWS publishes it from one
# account (LAYER_ACCOUNT); its docs give one ARN for every commercial region,
# `arn:aws:lambda:${AWS::Region}:753240598075:layer:LambdaAdapterLayerArm64:30`. Layer 30 is
# adapter 1.1.0: aws/aws-lambda-web-adapter#871 (2026-09-18) moved every reference from 28
# (1.0.1) to 30, after the release workflow had published it in all its production regions
# (29 was a reverted release and is skipped). A layer's version number counts per region, so
# the table lists only regions that have had every release; eu-central-2 is left out because
# its arm64 layer was published later than the others' (#269) and may carry another number.
# `make deploy` checks the version exists in the deploy file's region before CloudFormation runs
# (`python -m paymaster_infra.web_adapter check REGION`).
#
# To update: read the "Zip Packages" page of github.com/aws/aws-lambda-web-adapter and its
# release PR, check a region with `aws lambda get-layer-version-by-arn --arn
# arn:aws:lambda:<region>:753240598075:layer:LambdaAdapterLayerArm64:<v>`, set the version here
# (per region if they differ), `make synth`, `make smoke`, and run tests/infra. A region missing
# here fails synth for a deploy file in it (and the deploy of an env-agnostic template there):
# add it after checking its ARN. China (aws-cn) publishes from other accounts: not listed.
LAYER_VERSIONS: dict[str, int] = {
    "us-east-1": 30,
    "us-east-2": 30,
    "us-west-1": 30,
    "us-west-2": 30,
    "ca-central-1": 30,
    "eu-central-1": 30,
    "eu-west-1": 30,
    "eu-west-2": 30,
    "eu-west-3": 30,
    "eu-north-1": 30,
    "eu-south-1": 30,
    "ap-south-1": 30,
    "ap-northeast-1": 30,
    "ap-northeast-2": 30,
    "ap-northeast-3": 30,
    "ap-southeast-1": 30,
    "ap-southeast-2": 30,
    "sa-east-1": 30,
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
        raise ConfigError(_not_in_table(stack.region))
    arn = layer_arn(stack.region, version, partition=stack.partition)
    return lambda_.LayerVersion.from_layer_version_arn(scope, "WebAdapterLayer", arn)


def layer_arn(region: str, version: str, *, partition: str = "aws") -> str:
    return f"arn:{partition}:lambda:{region}:{LAYER_ACCOUNT}:layer:{LAYER_NAME}:{version}"


def _not_in_table(region: str) -> str:
    return (
        f"no Lambda Web Adapter layer version for {region}: add it to LAYER_VERSIONS in "
        "infra/paymaster_infra/web_adapter.py (the comment there says how)"
    )


def check_layer(region: str, lambda_client: Any) -> tuple[bool, str | None]:
    """(whether the layer could be looked up, what stops a deploy to `region` for want of it).

    Run by `make deploy` before CloudFormation: a layer version that does not exist there would
    otherwise fail the gateway function mid-update (on a first deploy, leaving a stack to
    delete). A check that cannot be made (no `lambda:GetLayerVersion`, a network error) is not a
    refusal: CloudFormation checks again."""
    if region not in LAYER_VERSIONS:
        return False, _not_in_table(region)
    arn = layer_arn(region, str(LAYER_VERSIONS[region]))
    try:
        lambda_client.get_layer_version_by_arn(Arn=arn)
    except lambda_client.exceptions.ResourceNotFoundException:
        return True, (
            f"{arn} does not exist in {region}: set that region's version in LAYER_VERSIONS "
            "(infra/paymaster_infra/web_adapter.py says how to find it)"
        )
    except Exception as error:  # noqa: BLE001 — any other failure only means "not checked"
        print(f"web adapter layer: could not check {arn} ({error}); CloudFormation will", file=sys.stderr)
        return False, None
    return True, None


def main(argv: list[str]) -> int:
    """`check REGION`: exit 1 naming the problem if the adapter's pinned layer is not there."""
    if len(argv) != 2 or argv[0] != "check":
        print("usage: web_adapter check REGION", file=sys.stderr)
        return 2
    import boto3  # noqa: PLC0415 — only the deploy preflight needs AWS

    region = argv[1]
    checked, problem = check_layer(region, boto3.client("lambda", region_name=region))
    if problem:
        print(f"make deploy: {problem}", file=sys.stderr)
        return 1
    if checked:
        print(f"web adapter layer: {layer_arn(region, str(LAYER_VERSIONS[region]))} is there")
    return 0


def web_adapter_environment() -> dict[str, str]:
    return {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "PORT": str(APP_PORT),
        "AWS_LWA_READINESS_CHECK_PATH": HEALTH_PATH,
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
