"""The gateway's access to its providers, derived from the policy file it is deployed with.

The gateway calls Bedrock (`bedrock-runtime` Converse / ConverseStream, authorised as
`bedrock:InvokeModel` / `bedrock:InvokeModelWithResponseStream`) for each deployment on a
`kind: bedrock` provider, and reads each provider's `api_key_secret` from Secrets Manager. The role
gets exactly that, computed by `provider_grants` (pure: a policy in, statements out) so that the
grants can be tested without synth and always follow the file.

Bedrock model ids take three shapes:
- a plain model id (`amazon.nova-lite-v1:0`): its foundation model in the provider's region;
- a cross-region inference profile id (`us.amazon.nova-lite-v1:0`): the profile in the provider's
  region, and the foundation model in any region, usable only through that profile
  (`bedrock:InferenceProfileArn`). AWS routes a profile's requests to its destination regions and
  authorises the foundation model there ("IAM policy requirements for Geographic cross-Region
  inference" and "... Global cross-Region inference" in the Bedrock user guide); global profiles'
  models have an empty region, which `*` covers too;
- a full ARN (a provisioned model, an application inference profile, …): granted as given. What
  such a resource routes to is not known at synth; grant that in the policy as its own deployment.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from paymaster.domain.policy import Policy
from paymaster_infra.nag import acknowledge

BEDROCK_INVOKE = ("bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream")
SECRETS_READ = ("secretsmanager:GetSecretValue",)

# The geography prefixes of system-defined (cross-region) inference profile ids, as aws-cdk-lib's
# bedrock-alpha lists them (CrossRegionInferenceProfileRegion). An id with a prefix missing here
# would be granted as a plain model id, which Bedrock refuses: add new geographies here.
INFERENCE_PROFILE_PREFIXES = frozenset({"us", "us-gov", "eu", "apac", "jp", "au", "global"})

# Secrets Manager appends a hyphen and six random characters to every secret's ARN.
ARN_SUFFIX_WILDCARD = "-??????"

PROFILE_CONDITION_KEY = "bedrock:InferenceProfileArn"


@dataclass(frozen=True)
class Grant:
    """One IAM statement: allow `actions` on `resources`, when `conditions` hold (if any)."""

    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def provider_grants(policy: Policy, *, partition: str, account: str, region: str) -> list[Grant]:
    """What the gateway needs to reach the policy's providers, as IAM statements.

    `partition`, `account` and `region` (the stack's, where the gateway reads its secrets) are
    strings or CDK tokens. Models and secrets appear once each, in the file's order; a policy
    without Bedrock deployments or secrets gets no statement for them.
    """
    direct: dict[str, None] = {}  # an ordered set: two virtual models may share a deployment
    profiles: dict[str, str] = {}  # inference-profile ARN → the foundation model it routes to
    for model in policy.models.values():
        for deployment in model.deployments:
            provider = policy.providers[deployment.provider]
            if provider.kind != "bedrock" or provider.region is None:
                continue
            model_id = deployment.model
            if model_id.startswith("arn:"):
                direct[model_id] = None
            elif (base_model := _profile_base_model(model_id)) is not None:
                profile = f"arn:{partition}:bedrock:{provider.region}:{account}:inference-profile/{model_id}"
                direct[profile] = None
                profiles[profile] = base_model
            else:
                direct[_foundation_model(partition, provider.region, model_id)] = None

    secrets = {
        _secret(partition, region, account, provider.api_key_secret): None
        for provider in policy.providers.values()
        if provider.api_key_secret
    }

    grants: list[Grant] = []
    if direct:
        grants.append(Grant(actions=BEDROCK_INVOKE, resources=tuple(direct)))
    grants.extend(
        Grant(
            actions=BEDROCK_INVOKE,
            resources=(_foundation_model(partition, "*", base_model),),
            conditions={"StringEquals": {PROFILE_CONDITION_KEY: profile}},
        )
        for profile, base_model in profiles.items()
    )
    if secrets:
        grants.append(Grant(actions=SECRETS_READ, resources=tuple(secrets)))
    return grants


def _profile_base_model(model_id: str) -> str | None:
    """`us.amazon.nova-lite-v1:0` → `amazon.nova-lite-v1:0`; None for a plain model id."""
    prefix, dot, rest = model_id.partition(".")
    return rest if dot and prefix in INFERENCE_PROFILE_PREFIXES else None


def _foundation_model(partition: str, region: str, model_id: str) -> str:
    return f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}"


def _secret(partition: str, region: str, account: str, name: str) -> str:
    """A secret named in the policy, or its full ARN as given (which carries the suffix)."""
    if name.startswith("arn:"):
        return name
    return f"arn:{partition}:secretsmanager:{region}:{account}:secret:{name}{ARN_SUFFIX_WILDCARD}"


# How cdk-nag names the stack's pseudo parameters in a finding id.
_NAG_PARTITION = "<AWS::Partition>"
_NAG_ACCOUNT = "<AWS::AccountId>"
_NAG_REGION = "<AWS::Region>"

_PROFILE_WILDCARD_REASON = (
    "A cross-region inference profile sends each request to its foundation model in one of the "
    "profile's destination regions, chosen by Bedrock per request; AWS documents granting the "
    "model in those regions. The statement is conditioned on bedrock:InferenceProfileArn, so the "
    "model is usable only through the profile the policy file names."
)


def wildcard_acknowledgements(policy: Policy) -> dict[str, str]:
    """The cdk-nag IAM5 findings `provider_grants` causes on purpose, with their reasons.

    IAM5 flags resources containing `*`: here only the any-region foundation models behind
    inference profiles. (The secrets' `-??????` suffix is not flagged.) Any other wildcard, say
    in a full ARN typed into the policy file, stays unacknowledged and fails synth.
    """
    return {
        f"AwsSolutions-IAM5[Resource::{resource}]": _PROFILE_WILDCARD_REASON
        for grant in provider_grants(policy, partition=_NAG_PARTITION, account=_NAG_ACCOUNT, region=_NAG_REGION)
        if PROFILE_CONDITION_KEY in grant.conditions.get("StringEquals", {})
        for resource in grant.resources
    }


class ProviderAccess(Construct):
    """Adds the policy's Bedrock models and provider secrets to `function`'s role, nothing more."""

    def __init__(self, scope: Construct, construct_id: str, *, policy: Policy, function: lambda_.Function) -> None:
        super().__init__(scope, construct_id)
        self.grants = provider_grants(policy, partition=Aws.PARTITION, account=Aws.ACCOUNT_ID, region=Aws.REGION)
        for grant in self.grants:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=list(grant.actions),
                    resources=list(grant.resources),
                    conditions={operator: dict(values) for operator, values in grant.conditions.items()} or None,
                )
            )
        # The statements land in the role's default policy, which lives under the role.
        acknowledgements = wildcard_acknowledgements(policy)
        if acknowledgements:
            assert function.role is not None
            acknowledge(function.role, acknowledgements)
