"""Put paymaster into an app: the stacks, their wiring and the cdk-nag checks."""

from dataclasses import dataclass

from aws_cdk import App, Environment, Tags

from paymaster_infra.config import AppConfig
from paymaster_infra.nag import add_checks
from paymaster_infra.stacks import GatewayStack, StatefulStack

STATEFUL_STACK_NAME = "PaymasterState"
GATEWAY_STACK_NAME = "PaymasterGateway"


@dataclass(frozen=True)
class Paymaster:
    state: StatefulStack
    gateway: GatewayStack


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
    Tags.of(app).add("project", "paymaster")
    add_checks(app)
    return Paymaster(state=state, gateway=gateway)
