"""Put paymaster into an app: the stacks, their wiring and the cdk-nag checks."""

import os
from dataclasses import dataclass

from aws_cdk import App, Environment, Tags
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs

from paymaster_infra.config import AppConfig
from paymaster_infra.dashboards import Dashboards
from paymaster_infra.nag import add_checks
from paymaster_infra.operational_alarms import (
    OperationalAlarms,
    dead_letter_queues_of,
    functions_of,
)
from paymaster_infra.ops_topic import OpsTopic
from paymaster_infra.stacks import GatewayStack, StatefulStack
from paymaster_infra.state_parameters import QUEUE_ARN, QUEUES, TOPIC_ARN, dead_letter_field, publish_values, read_value

STATEFUL_STACK_NAME = "PaymasterState"
GATEWAY_STACK_NAME = "PaymasterGateway"


@dataclass(frozen=True)
class Paymaster:
    state: StatefulStack
    gateway: GatewayStack
    ops: OpsTopic
    alarms: OperationalAlarms  # the gateway stack's: its functions and API, refusals without the store
    state_alarms: OperationalAlarms  # the state stack's: its tables and dead-letter queues
    dashboards: Dashboards


def stack_environment(config: AppConfig) -> Environment:
    """Where both stacks go: the deploy file's account and region, else the CDK CLI's defaults
    (none outside the CLI: env-agnostic templates)."""
    deploy = config.deploy_file
    if deploy is not None:
        return Environment(account=deploy.account, region=deploy.region)
    return Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION"))


def add_paymaster(app: App, config: AppConfig, *, env: Environment | None = None) -> Paymaster:
    policy = config.check()
    state = StatefulStack(
        app,
        STATEFUL_STACK_NAME,
        env=env,
        description=(
            "paymaster state: counters and ledger tables, event bus and archive, settlement, ledger and denial queues"
        ),
    )
    gateway = GatewayStack(
        app,
        GATEWAY_STACK_NAME,
        env=env,
        description="paymaster gateway: REST API (AWS_IAM, streaming), gateway, retry, sweeper and ledger Lambdas",
        config=config,
        policy=policy,
    )
    # The gateway reads the state's SSM parameters (no exports, so no implied order): state first.
    gateway.add_stack_dependency(state)
    # Added once both stacks hold everything else: they watch whatever functions, queues and
    # tables the stacks have. Each stack alarms on what it holds, and the gateway's dashboards and
    # alarms find the state's topic, tables and dead-letter queues through SSM: a reference across
    # the stacks would be an export, which blocks changing what it names.
    ops = OpsTopic(state, "Ops", emails=config.ops_emails)
    # A dead-letter queue the gateway stack already reads (`state_parameters.QUEUES`) is found as it
    # is; each other one gets a parameter of its own.
    read_already = {id(getattr(state.published, field)): field for field in QUEUES}
    dead_letters = dead_letter_queues_of(state)
    publish_values(
        state,
        {("ops_topic", TOPIC_ARN): ops.topic.topic_arn}
        | {(dead_letter_field(q), QUEUE_ARN): q.queue_arn for q in dead_letters if id(q) not in read_already},
    )

    def as_the_gateway_sees(index: int, queue: sqs.Queue) -> sqs.IQueue:
        if id(queue) in read_already:
            seen: sqs.IQueue = getattr(gateway.state, read_already[id(queue)])
            return seen
        arn = read_value(gateway, dead_letter_field(queue), QUEUE_ARN)
        return sqs.Queue.from_queue_arn(gateway, f"DeadLetters{index}", arn)

    state_alarms = OperationalAlarms(state, "OperationalAlarms", topic=ops.topic, watched=[state], of_metrics=False)
    gateway_ops = sns.Topic.from_topic_arn(gateway, "OpsTopic", read_value(gateway, "ops_topic", TOPIC_ARN))
    alarms = OperationalAlarms(gateway, "OperationalAlarms", topic=gateway_ops, watched=[gateway])
    dashboards = Dashboards(
        gateway,
        "Dashboards",
        policy=policy,
        api=gateway.api.api,
        functions=functions_of(gateway),
        tables=[gateway.state.counters, gateway.state.ledger, gateway.state.prompts],
        dead_letter_queues=[as_the_gateway_sees(index, queue) for index, queue in enumerate(dead_letters)],
    )
    Tags.of(app).add("project", "paymaster")
    add_checks(app)
    return Paymaster(
        state=state,
        gateway=gateway,
        ops=ops,
        alarms=alarms,
        state_alarms=state_alarms,
        dashboards=dashboards,
    )
