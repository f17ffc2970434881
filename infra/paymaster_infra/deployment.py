"""Put paymaster into an app: the stacks, their wiring and the cdk-nag checks."""

from dataclasses import dataclass

from aws_cdk import App, Environment, Tags

from paymaster_infra.config import AppConfig
from paymaster_infra.dashboards import Dashboards
from paymaster_infra.nag import add_checks
from paymaster_infra.operational_alarms import (
    OperationalAlarms,
    dead_letter_queues_of,
    functions_of,
    tables_of,
)
from paymaster_infra.ops_topic import OpsTopic
from paymaster_infra.stacks import GatewayStack, StatefulStack

STATEFUL_STACK_NAME = "PaymasterState"
GATEWAY_STACK_NAME = "PaymasterGateway"


@dataclass(frozen=True)
class Paymaster:
    state: StatefulStack
    gateway: GatewayStack
    ops: OpsTopic
    alarms: OperationalAlarms
    dashboards: Dashboards


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
        counters=state.tables.counters,
        ledger=state.tables.ledger,
        prompts=state.tables.prompts,
        bus=state.events.bus,
        settlement_queue=state.settlements.queue,
        ledger_failures=state.ledger_failures.queue,
        denials_queue=state.denials.queue,
        sweeper_dead_letters=state.sweeper_dead_letters.queue,
        alarm_queue=state.alarms.queue,
    )
    # Added once both stacks hold everything else: they watch whatever functions, queues and
    # tables the stacks have.
    ops = OpsTopic(state, "Ops", emails=config.ops_emails)
    alarms = OperationalAlarms(gateway, "OperationalAlarms", topic=ops.topic, watched=[state, gateway])
    dashboards = Dashboards(
        gateway,
        "Dashboards",
        policy=policy,
        api=gateway.api.api,
        functions=functions_of(gateway),
        tables=tables_of(state),
        dead_letter_queues=dead_letter_queues_of(state),
    )
    Tags.of(app).add("project", "paymaster")
    add_checks(app)
    return Paymaster(
        state=state,
        gateway=gateway,
        ops=ops,
        alarms=alarms,
        dashboards=dashboards,
    )
