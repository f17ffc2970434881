"""Budget alarms (docs/ALARMS.md): the rule that routes every BudgetThresholdCrossed on the bus to
the alarm queue (and its dead-letter queue) — state, in the stateful stack — and the budget-alarm
function that emails each one with one SNS topic per team of the policy, its `alerts.emails`
subscribed — in the gateway stack.

Topics are named by `names.alert_topic_name` (the function finds a team's as
`names.ENV_ALERT_TOPIC_ARN_PREFIX` + the team's part: a map of hundreds of teams would not fit
Lambda's 4 KB environment). Each is encrypted with SNS's AWS-managed key and refuses plain HTTP.
An email subscriber confirms once, by the link SNS sends, or receives nothing.

The queues are retained: an alarm on the dead-letter queue is an email nobody got yet.
"""

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from paymaster import names, schema
from paymaster.domain.policy import Policy
from paymaster_infra.alert_topics import grant_publish_to_team_topics
from paymaster_infra.config import AppConfig
from paymaster_infra.event_queue import EventQueue
from paymaster_infra.gateway_function import read_rollups_only
from paymaster_infra.lambda_defaults import EVENT_HANDLER, default_function
from paymaster_infra.layers import POLICY_FILE, GatewayLayers
from paymaster_infra.settlement_queue import VISIBILITY_PER_CONSUMER_TIMEOUT

# A message is one email: the markers (3 writes), two rollup queries and one Publish, each given up
# after a few seconds. Shorter than the claim's lease (services.alarms.CLAIM_LEASE_S, 60 s), so a
# live sender is never doubled; the visibility timeout, longer than the lease, lets the next
# delivery of a message whose sender died take the claim over.
TIMEOUT = Duration.seconds(30)
VISIBILITY_TIMEOUT = Duration.seconds(VISIBILITY_PER_CONSUMER_TIMEOUT * TIMEOUT.to_seconds())
BATCH_SIZE = 10
# Every marker the function writes and deletes is under `ALERT#`; every rollup it reads under `SPEND#`.
MARKERS_ONLY = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{schema.ALERT_PREFIX}*"]}}
WRITE_MARKERS = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")


class AlarmQueue(EventQueue):
    """The alarm queue and its dead-letter queue (SSE-SQS, TLS only, 14 days), and the rule that
    fills it. State: it lives with the tables and is retained, and the rule beside it, since the
    queue's policy must name the rule (as the denials queue's)."""

    def __init__(self, scope: Construct, construct_id: str, *, bus: events.IEventBus) -> None:
        super().__init__(
            scope,
            construct_id,
            bus=bus,
            detail_type=names.BUDGET_THRESHOLD_CROSSED,
            description="Every BudgetThresholdCrossed, for the budget-alarm function",
            max_receives=names.ALARM_MAX_RECEIVES,
            visibility_timeout=VISIBILITY_TIMEOUT,
        )


class BudgetAlarms(Construct):
    """Consumes the alarm queue (`AlarmQueue.queue`) in batches, reporting each message it could not send so that only
    those come back, until `names.ALARM_MAX_RECEIVES` deliveries move one to the dead-letter queue.

    The function mounts the core package, its dependencies and the policy; it may write the
    ledger's alarm markers, read its rollups, consume the queue and publish to the teams' topics;
    nothing else.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        policy: Policy,
        layers: GatewayLayers,
        ledger: dynamodb.ITable,
        queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)

        key = kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns")
        self.topics: dict[str, sns.Topic] = {}
        for team_name, team in policy.teams.items():
            topic = sns.Topic(
                self,
                f"Topic-{names.alert_topic_suffix(team_name)}",
                topic_name=names.alert_topic_name(team_name),
                display_name=f"paymaster {team_name}"[:100],
                master_key=key,
                enforce_ssl=True,
            )
            for email in team.alerts.emails:
                topic.add_subscription(subscriptions.EmailSubscription(email))
            self.topics[team_name] = topic

        topic_arn_prefix = Stack.of(self).format_arn(
            service="sns", resource=names.ALERT_TOPIC_PREFIX, arn_format=ArnFormat.NO_RESOURCE_NAME
        )
        self.function = default_function(
            self,
            "Function",
            description="paymaster budget alarms: one email per threshold crossed, to the team's topic",
            code_dir=config.budget_alarm_code_dir,
            handler=EVENT_HANDLER,
            layers=[*layers.python, layers.policy],
            environment={
                names.ENV_LEDGER_TABLE: ledger.table_name,
                names.ENV_POLICY_FILE: POLICY_FILE,
                names.ENV_ALERT_TOPIC_ARN_PREFIX: topic_arn_prefix,
            },
            timeout=TIMEOUT,
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(actions=list(WRITE_MARKERS), resources=[ledger.table_arn], conditions=MARKERS_ONLY)
        )
        self.function.add_to_role_policy(read_rollups_only(ledger))
        grant_publish_to_team_topics(self.function)
        self.function.add_event_source(
            event_sources.SqsEventSource(queue, batch_size=BATCH_SIZE, report_batch_item_failures=True)
        )
