"""Publishing to the teams' alert topics (`names.alert_topic_name`): one grant for all of them.

A grant per topic would put one ARN per team into each publisher's role policy, and a role's
inline policies hold 10,240 characters: a few hundred teams. The topics share a name prefix, so
one statement on `<prefix>*` in the stack's account and region covers every team's, today's and
those a later policy adds, and no other topic.
"""

from aws_cdk import Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from paymaster import names
from paymaster_infra.nag import acknowledge


def grant_publish_to_team_topics(function: lambda_.Function) -> None:
    stack = Stack.of(function)
    prefix = f"arn:{stack.partition}:sns:{stack.region}:{stack.account}:{names.ALERT_TOPIC_PREFIX}"
    function.add_to_role_policy(iam.PolicyStatement(actions=["sns:Publish"], resources=[f"{prefix}*"]))
    # cdk-nag names the region and account as the template has them: pseudo parameters in an
    # env-agnostic stack, the literal values in a deploy file's (`make deploy ENV=…`).
    region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
    account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
    assert function.role is not None
    acknowledge(
        function.role,  # its policies live under the role (lambda_defaults.default_function)
        {
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sns:{region}:{account}:"
            f"{names.ALERT_TOPIC_PREFIX}*]": "One alert topic per team, named by the prefix: only those.",
        },
    )
