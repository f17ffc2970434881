"""The platform team's topic: where the operational alarms go (operational_alarms.py)."""

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicies, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

# What CloudWatch needs of the topic's key to publish an alarm to it (AWS's managed key for SNS
# does not let CloudWatch use it: a topic encrypted with `alias/aws/sns` drops every alarm).
_CLOUDWATCH_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey*")
_CLOUDWATCH = "cloudwatch.amazonaws.com"


class OpsTopic(Construct):
    """An SNS topic encrypted with its own KMS key (rotated yearly), TLS only, that CloudWatch
    alarms of this account may publish to; each of `emails` is subscribed (and must confirm the
    subscription once, or receives nothing). Topic and key live with the state and are retained:
    replacing the topic would drop every confirmed subscription.
    """

    def __init__(self, scope: Construct, construct_id: str, *, emails: Sequence[str]) -> None:
        super().__init__(scope, construct_id)
        account = Stack.of(self).account
        self.key = kms.Key(
            self,
            "Key",
            description="paymaster ops topic: operational alarms",
            enable_key_rotation=True,
            pending_window=Duration.days(30),
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=list(_CLOUDWATCH_KEY_ACTIONS),
                principals=[iam.ServicePrincipal(_CLOUDWATCH)],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"StringEquals": {"aws:SourceAccount": account}},
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="paymaster ops",
            master_key=self.key,
            enforce_ssl=True,
        )
        # With `enforce_ssl` the topic has a policy of its own, which replaces SNS's default one:
        # CloudWatch must be allowed to publish in it, from this account's alarms only.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["sns:Publish"],
                principals=[iam.ServicePrincipal(_CLOUDWATCH)],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": account},
                    "ArnLike": {"aws:SourceArn": f"arn:{Stack.of(self).partition}:cloudwatch:*:{account}:alarm:*"},
                },
            )
        )
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        RemovalPolicies.of(self).retain()
