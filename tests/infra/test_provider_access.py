"""The gateway's provider permissions, computed from a policy without synth."""

import pytest

from paymaster.adapters.policy_file import load_policy
from paymaster.domain.policy import Deployment, Policy, Provider
from paymaster_infra.config import DEFAULT_POLICY_FILE, REPO_ROOT
from paymaster_infra.provider_access import (
    BEDROCK_INVOKE,
    SECRETS_READ,
    Grant,
    provider_grants,
    wildcard_acknowledgements,
)

DEMO = load_policy(REPO_ROOT / DEFAULT_POLICY_FILE)
ACCOUNT = "123456789012"
STACK_REGION = "eu-central-1"

BEDROCK_US = Provider(kind="bedrock", region="us-east-1")
BEDROCK_EU = Provider(kind="bedrock", region="eu-west-1")
OPENAI = Provider(kind="openai", base_url="https://api.openai.com/v1")


def policy_with(providers: dict[str, Provider], models: dict[str, list[tuple[str, str]]]) -> Policy:
    """The demo policy with other providers and models (`name: [(provider, model id), ...]`).

    Only providers and deployments matter to the grants; everything else is the demo's.
    """
    template = next(iter(DEMO.models.values()))
    return DEMO.model_copy(
        update={
            "providers": providers,
            "models": {
                name: template.model_copy(
                    update={"deployments": [Deployment(provider=p, model=m) for p, m in deployments]}
                )
                for name, deployments in models.items()
            },
        }
    )


def grants(policy: Policy) -> list[Grant]:
    return provider_grants(policy, partition="aws", account=ACCOUNT, region=STACK_REGION)


def test_plain_model_id_grants_its_foundation_model_in_the_provider_region() -> None:
    policy = policy_with({"bedrock": BEDROCK_EU}, {"nova": [("bedrock", "amazon.nova-lite-v1:0")]})
    assert grants(policy) == [
        Grant(
            actions=("bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"),
            resources=("arn:aws:bedrock:eu-west-1::foundation-model/amazon.nova-lite-v1:0",),
        )
    ]


def test_inference_profile_id_grants_the_profile_and_its_model_in_any_region_through_it() -> None:
    model = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    policy = policy_with({"bedrock": BEDROCK_US}, {"haiku": [("bedrock", model)]})
    profile = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/{model}"
    assert grants(policy) == [
        Grant(actions=BEDROCK_INVOKE, resources=(profile,)),
        Grant(
            actions=BEDROCK_INVOKE,
            resources=("arn:aws:bedrock:*::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",),
            conditions={"StringEquals": {"bedrock:InferenceProfileArn": profile}},
        ),
    ]


@pytest.mark.parametrize("prefix", ["us", "eu", "apac", "global"])
def test_every_geography_prefix_names_an_inference_profile(prefix: str) -> None:
    policy = policy_with({"bedrock": BEDROCK_EU}, {"m": [("bedrock", f"{prefix}.anthropic.claude-x-v1:0")]})
    direct, via_profile = grants(policy)
    assert direct.resources == (
        f"arn:aws:bedrock:eu-west-1:{ACCOUNT}:inference-profile/{prefix}.anthropic.claude-x-v1:0",
    )
    assert via_profile.resources == ("arn:aws:bedrock:*::foundation-model/anthropic.claude-x-v1:0",)


def test_full_arn_model_id_is_granted_as_given() -> None:
    arn = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/abc123"
    policy = policy_with({"bedrock": BEDROCK_US}, {"tracked": [("bedrock", arn)]})
    assert grants(policy) == [Grant(actions=BEDROCK_INVOKE, resources=(arn,))]


def test_named_secret_is_granted_with_the_suffix_secrets_manager_appends() -> None:
    openai = OPENAI.model_copy(update={"api_key_secret": "paymaster/providers/openai"})
    policy = policy_with({"openai": openai}, {"gpt": [("openai", "gpt-4o-mini")]})
    assert grants(policy) == [
        Grant(
            actions=("secretsmanager:GetSecretValue",),
            resources=(f"arn:aws:secretsmanager:{STACK_REGION}:{ACCOUNT}:secret:paymaster/providers/openai-??????",),
        )
    ]


def test_secret_given_as_full_arn_is_granted_as_given() -> None:
    arn = f"arn:aws:secretsmanager:{STACK_REGION}:{ACCOUNT}:secret:openai-AbCdEf"
    policy = policy_with({"openai": OPENAI.model_copy(update={"api_key_secret": arn})}, {"gpt": [("openai", "g")]})
    assert grants(policy) == [Grant(actions=SECRETS_READ, resources=(arn,))]


def test_openai_models_and_providers_without_secrets_grant_nothing() -> None:
    policy = policy_with({"openai": OPENAI}, {"gpt": [("openai", "gpt-4o-mini")]})
    assert grants(policy) == []


def test_models_shared_by_virtual_models_and_mixed_providers_are_granted_once() -> None:
    openai = OPENAI.model_copy(update={"api_key_secret": "keys/openai"})
    policy = policy_with(
        {"us": BEDROCK_US, "eu": BEDROCK_EU, "openai": openai},
        {
            "nova": [("us", "amazon.nova-lite-v1:0"), ("eu", "amazon.nova-lite-v1:0")],
            "nova-cheap": [("us", "amazon.nova-lite-v1:0")],
            "gpt": [("openai", "amazon.nova-lite-v1:0")],  # an openai deployment: no Bedrock grant
        },
    )
    assert grants(policy) == [
        Grant(
            actions=BEDROCK_INVOKE,
            resources=(
                "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0",
                "arn:aws:bedrock:eu-west-1::foundation-model/amazon.nova-lite-v1:0",
            ),
        ),
        Grant(
            actions=SECRETS_READ,
            resources=(f"arn:aws:secretsmanager:{STACK_REGION}:{ACCOUNT}:secret:keys/openai-??????",),
        ),
    ]


def test_demo_policy_grants() -> None:
    """Chat models behind `us.` inference profiles (Haiku in two regions), embeddings models direct."""
    profiles = [
        ("us-east-1", "anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("us-west-2", "anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("us-east-1", "anthropic.claude-sonnet-4-20250514-v1:0"),
        ("us-east-1", "amazon.nova-lite-v1:0"),
        ("us-east-1", "meta.llama3-3-70b-instruct-v1:0"),
    ]

    def profile(region: str, model: str) -> str:
        return f"arn:aws:bedrock:{region}:{ACCOUNT}:inference-profile/us.{model}"

    direct = ("amazon.titan-embed-text-v2:0", "cohere.embed-english-v3")
    assert grants(DEMO) == [
        Grant(
            actions=BEDROCK_INVOKE,
            resources=(
                *(profile(region, model) for region, model in profiles),
                *(f"arn:aws:bedrock:us-east-1::foundation-model/{model}" for model in direct),
            ),
        ),
        *(
            Grant(
                actions=BEDROCK_INVOKE,
                resources=(f"arn:aws:bedrock:*::foundation-model/{model}",),
                conditions={"StringEquals": {"bedrock:InferenceProfileArn": profile(region, model)}},
            )
            for region, model in profiles
        ),
        Grant(
            actions=SECRETS_READ,
            resources=tuple(
                f"arn:aws:secretsmanager:{STACK_REGION}:{ACCOUNT}:secret:paymaster/providers/{name}-??????"
                for name in ("openai", "anthropic")
            ),
        ),
    ]


def test_only_the_any_region_models_behind_profiles_are_acknowledged_wildcards() -> None:
    policy = policy_with(
        {"us": BEDROCK_US, "openai": OPENAI.model_copy(update={"api_key_secret": "keys/openai"})},
        {"haiku": [("us", "us.anthropic.claude-3-5-haiku-20241022-v1:0")], "nova": [("us", "amazon.nova-lite-v1:0")]},
    )
    acknowledged = wildcard_acknowledgements(policy)
    assert list(acknowledged) == [
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/"
        "anthropic.claude-3-5-haiku-20241022-v1:0]"
    ]
    assert "bedrock:InferenceProfileArn" in acknowledged[next(iter(acknowledged))]


def test_a_policy_without_profiles_acknowledges_nothing() -> None:
    policy = policy_with({"eu": BEDROCK_EU}, {"nova": [("eu", "amazon.nova-lite-v1:0")]})
    assert wildcard_acknowledgements(policy) == {}
