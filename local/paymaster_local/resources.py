"""Everything the gateway needs in AWS, created in the local moto server at start.

The tables come from `paymaster.schema`, as in the CDK app, so local and deployed tables agree.
Returns the environment the gateway reads them from.
"""

import json
from typing import Any

import boto3

from paymaster import names, schema
from paymaster.domain.policy import Policy
from paymaster.names import ALARM_MAX_RECEIVES, DENIALS_MAX_RECEIVES, SETTLEMENT_MAX_RECEIVES

COUNTERS_TABLE = "paymaster-counters"
LEDGER_TABLE = "paymaster-ledger"
PROMPTS_TABLE = "paymaster-prompts"
EVENT_BUS = "paymaster-events"
COST_EVENTS_QUEUE = "paymaster-cost-events"
MAIL_QUEUE = "paymaster-mail"  # subscribed to every team's topic: what their subscribers would receive
SETTLEMENT_QUEUE = "paymaster-settlements"
SETTLEMENT_DLQ = "paymaster-settlements-dlq"
LEDGER_FAILURES = "paymaster-ledger-failures"  # where the runner sets aside a stream record that kept failing
DENIALS_RULE = "paymaster-denials-to-ledger"
DENIALS_QUEUE = "paymaster-denials"  # RequestDenied events, for the denials ledger function
DENIALS_DLQ = "paymaster-denials-dlq"
ALARMS_RULE = "paymaster-budget-alarms"
ALARMS_QUEUE = "paymaster-budget-alarms"  # BudgetThresholdCrossed events, for the budget-alarm function
ALARMS_DLQ = "paymaster-budget-alarms-dlq"
# Local only: the queue the runner reads the teams' emails from (`paymaster_local.mail`).
ENV_MAIL_QUEUE_URL = "PAYMASTER_LOCAL_MAIL_QUEUE_URL"
ENV_MAIL_DIR = "PAYMASTER_LOCAL_MAIL_DIR"  # where it writes each as an .eml file
# Locally a failed settlement (or denial) comes back after a few seconds, and goes to the
# dead-letter queue after as many deliveries as in AWS (infra: the settlement and denial queues).
SETTLEMENT_VISIBILITY_TIMEOUT_S = 5
FAKE_API_KEY = "sk-local-fake-provider-key"
# What the denials rule routes to its queue, here as in the CDK app (infra's DenialQueue).
DENIALS_PATTERN = {"source": [names.EVENT_SOURCE], "detail-type": [names.REQUEST_DENIED]}
# And what the alarms rule routes to the alarm queue (infra's BudgetAlarms).
ALARMS_PATTERN = {"source": [names.EVENT_SOURCE], "detail-type": [names.BUDGET_THRESHOLD_CROSSED]}


def create_resources(endpoint_url: str | None, policy: Policy) -> dict[str, str]:
    """`endpoint_url` None: the default AWS endpoints, as moto's in-process mock intercepts them."""
    # moto accepts any credentials; these are not secrets.
    session = boto3.Session(
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106
        region_name=names.LOCAL_REGION,
    )

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint_url)

    dynamodb = client("dynamodb")
    tables = ((schema.COUNTERS, COUNTERS_TABLE), (schema.LEDGER, LEDGER_TABLE), (schema.PROMPTS, PROMPTS_TABLE))
    for definition, table_name in tables:
        dynamodb.create_table(**definition.create_table_request(table_name))
        dynamodb.update_time_to_live(**definition.ttl_request(table_name))

    events, sqs, sns = client("events"), client("sqs"), client("sns")
    events.create_event_bus(Name=EVENT_BUS)
    queue_url = sqs.create_queue(QueueName=COST_EVENTS_QUEUE)["QueueUrl"]
    route(events, sqs, "paymaster-all-events", {"source": [names.EVENT_SOURCE]}, queue_url)
    topic_arn_prefix, mail_url = team_topics(sqs, sns, policy)
    settlements_url = queue_with_dead_letters(
        sqs, SETTLEMENT_QUEUE, dead_letters=SETTLEMENT_DLQ, max_receives=SETTLEMENT_MAX_RECEIVES
    )

    ledger_failures_url = sqs.create_queue(QueueName=LEDGER_FAILURES)["QueueUrl"]

    denials_url = rule_to_queue(
        events,
        sqs,
        DENIALS_RULE,
        DENIALS_PATTERN,
        queue=DENIALS_QUEUE,
        dead_letters=DENIALS_DLQ,
        max_receives=DENIALS_MAX_RECEIVES,
    )

    alarms_url = rule_to_queue(
        events,
        sqs,
        ALARMS_RULE,
        ALARMS_PATTERN,
        queue=ALARMS_QUEUE,
        dead_letters=ALARMS_DLQ,
        max_receives=ALARM_MAX_RECEIVES,
    )

    secrets = client("secretsmanager")
    for provider in policy.providers.values():
        if provider.api_key_secret:
            secrets.create_secret(Name=provider.api_key_secret, SecretString=FAKE_API_KEY)

    return {
        names.ENV_COUNTERS_TABLE: COUNTERS_TABLE,
        names.ENV_LEDGER_TABLE: LEDGER_TABLE,
        names.ENV_PROMPTS_TABLE: PROMPTS_TABLE,
        names.ENV_EVENT_BUS: EVENT_BUS,
        names.ENV_EVENTS_QUEUE_URL: queue_url,
        names.ENV_SETTLEMENT_QUEUE_URL: settlements_url,
        names.ENV_LEDGER_FAILURE_QUEUE_URL: ledger_failures_url,
        names.ENV_DENIALS_QUEUE_URL: denials_url,
        names.ENV_ALARM_QUEUE_URL: alarms_url,
        names.ENV_ALERT_TOPIC_ARN_PREFIX: topic_arn_prefix,
        ENV_MAIL_QUEUE_URL: mail_url,
    }


def rule_to_queue(
    events: Any, sqs: Any, rule: str, pattern: dict[str, Any], *, queue: str, dead_letters: str, max_receives: int
) -> str:
    """A rule on the bus delivering what `pattern` matches to `queue`, which hands a message it
    delivered `max_receives` times to `dead_letters`; the queue's URL."""
    url = queue_with_dead_letters(sqs, queue, dead_letters=dead_letters, max_receives=max_receives)
    route(events, sqs, rule, pattern, url)
    return url


def route(events: Any, sqs: Any, rule: str, pattern: dict[str, Any], url: str) -> None:
    """A rule on the bus delivering what `pattern` matches to the queue at `url`."""
    events.put_rule(Name=rule, EventBusName=EVENT_BUS, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, EventBusName=EVENT_BUS, Targets=[{"Id": "queue", "Arn": queue_arn(sqs, url)}])


def queue_with_dead_letters(sqs: Any, queue: str, *, dead_letters: str, max_receives: int) -> str:
    """`queue`, whose failed messages come back after `SETTLEMENT_VISIBILITY_TIMEOUT_S` and move to
    `dead_letters` after `max_receives` deliveries, as the CDK app's queues do; its URL."""
    dlq_url = sqs.create_queue(QueueName=dead_letters)["QueueUrl"]
    redrive = {"deadLetterTargetArn": queue_arn(sqs, dlq_url), "maxReceiveCount": max_receives}
    url: str = sqs.create_queue(
        QueueName=queue,
        Attributes={"VisibilityTimeout": str(SETTLEMENT_VISIBILITY_TIMEOUT_S), "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    return url


def queue_arn(sqs: Any, url: str) -> str:
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return arn


def team_topics(sqs: Any, sns: Any, policy: Policy) -> tuple[str, str]:
    """One SNS topic per team, named as the CDK app names them, each delivering to the local mail
    queue (SNS's JSON envelope: TopicArn, Subject, Message), where the runner reads what the
    team's email subscribers would receive. Returns the topics' ARN prefix and the queue's URL."""
    mail_url = sqs.create_queue(QueueName=MAIL_QUEUE)["QueueUrl"]
    mail_arn = queue_arn(sqs, mail_url)
    prefix = mail_arn.rsplit(":", 1)[0].replace(":sqs:", ":sns:") + ":" + names.ALERT_TOPIC_PREFIX
    for team in policy.teams:
        topic = sns.create_topic(Name=names.alert_topic_name(team))["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=mail_arn)
    return prefix, mail_url
