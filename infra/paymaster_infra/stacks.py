"""The two stacks: state that must outlive deployments, and the gateway that can be replaced."""

from typing import Any

from aws_cdk import Aspects, CfnOutput, Stack
from constructs import Construct

from paymaster.domain.policy import Policy
from paymaster_infra.budget_alarms import AlarmQueue, BudgetAlarms
from paymaster_infra.config import AppConfig
from paymaster_infra.denial_queue import DenialQueue
from paymaster_infra.event_bus import CostEventBus
from paymaster_infra.gateway_api import GatewayApi
from paymaster_infra.gateway_function import GatewayFunction
from paymaster_infra.lambda_defaults import FunctionLogRetention
from paymaster_infra.layers import GatewayLayers
from paymaster_infra.ledger_denials import DenialLedgerFunction
from paymaster_infra.ledger_failures import LedgerFailureQueue
from paymaster_infra.ledger_function import LedgerFunction
from paymaster_infra.schedules import ReportSchedules
from paymaster_infra.settlement_queue import SettlementQueue
from paymaster_infra.settlement_retry import SettlementRetryFunction
from paymaster_infra.state_parameters import StateResources, publish_state, read_state
from paymaster_infra.sweeper import SweeperDeadLetterQueue, SweeperFunction
from paymaster_infra.tables import CounterTables


class StatefulStack(Stack):
    """Tables, bus, archive, the settlement queue, the ledger's failure queue, the denials queue
    with its rule and the sweeper's dead-letter queue. Everything here is retained when the stack is deleted,
    but the SSM parameters that tell the gateway stack their names (`state_parameters`)."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.tables = CounterTables(self, "Tables")
        self.events = CostEventBus(self, "Events")
        self.settlements = SettlementQueue(self, "Settlements")
        self.ledger_failures = LedgerFailureQueue(self, "LedgerFailures")
        self.denials = DenialQueue(self, "Denials", bus=self.events.bus)
        self.sweeper_dead_letters = SweeperDeadLetterQueue(self, "SweeperDeadLetters")
        self.alarms = AlarmQueue(self, "Alarms", bus=self.events.bus)
        self.published = StateResources(
            counters=self.tables.counters,
            ledger=self.tables.ledger,
            prompts=self.tables.prompts,
            bus=self.events.bus,
            settlement_queue=self.settlements.queue,
            ledger_failures=self.ledger_failures.queue,
            denials_queue=self.denials.queue,
            sweeper_dead_letters=self.sweeper_dead_letters.queue,
            alarm_queue=self.alarms.queue,
        )
        publish_state(self, self.published)

        dead_letters = self.settlements.dead_letter_queue
        CfnOutput(
            self,
            "SettlementDeadLetterQueueUrl",
            value=dead_letters.queue_url,
            description="Settlements that failed every delivery: read them here (infra/README.md)",
        )
        CfnOutput(
            self,
            "SettlementDeadLetterQueueArn",
            value=dead_letters.queue_arn,
            description="Replay them with aws sqs start-message-move-task --source-arn <this>",
        )
        CfnOutput(
            self,
            "LedgerFailureQueueUrl",
            value=self.ledger_failures.queue.queue_url,
            description="Stream batches the ledger function failed every retry on (docs/LEDGER.md)",
        )
        CfnOutput(
            self,
            "DenialDeadLetterQueueUrl",
            value=self.denials.dead_letter_queue.queue_url,
            description="RequestDenied events the ledger could not record in every delivery (docs/LEDGER.md)",
        )
        CfnOutput(
            self,
            "BudgetAlarmDeadLetterQueueUrl",
            value=self.alarms.dead_letter_queue.queue_url,
            description="Budget alarms that could not be emailed in every delivery (docs/ALARMS.md)",
        )
        CfnOutput(
            self,
            "SweeperDeadLetterQueueUrl",
            value=self.sweeper_dead_letters.queue.queue_url,
            description="Minutes the sweeper could not sweep: not delivered, or the sweep failed (docs/COUNTERS.md)",
        )


class GatewayStack(Stack):
    """Layers, gateway function, API, the settlement-retry, sweeper, report-schedule and two
    ledger functions, the budget alarms; holds no data, so it can be destroyed and redeployed.

    It finds the state stack's tables, bus and queues through the SSM parameters that stack writes
    (`state_parameters`), not through exports, so the state stack stays free to change them."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        policy: Policy,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.state = read_state(Construct(self, "State"))
        counters, ledger, prompts = self.state.counters, self.state.ledger, self.state.prompts
        bus, settlement_queue = self.state.bus, self.state.settlement_queue
        ledger_failures, denials_queue = self.state.ledger_failures, self.state.denials_queue
        sweeper_dead_letters, alarm_queue = self.state.sweeper_dead_letters, self.state.alarm_queue
        deployment = config.deployment
        Aspects.of(self).add(FunctionLogRetention(deployment.log_retention.function_logs_days))
        self.layers = GatewayLayers(self, "Layers", config=config)
        self.gateway = GatewayFunction(
            self,
            "Gateway",
            config=config,
            policy=policy,
            layers=self.layers,
            counters=counters,
            ledger=ledger,
            prompts=prompts,
            bus=bus,
            settlement_queue=settlement_queue,
        )
        self.api = GatewayApi(self, "Api", handler=self.gateway.function, deployment=deployment)
        self.settlement_retry = SettlementRetryFunction(
            self,
            "SettlementRetry",
            config=config,
            layers=self.layers,
            counters=counters,
            prompts=prompts,
            queue=settlement_queue,
        )
        self.sweeper = SweeperFunction(
            self,
            "Sweeper",
            config=config,
            layers=self.layers,
            counters=counters,
            settlement_queue=settlement_queue,
            dead_letters=sweeper_dead_letters,
        )
        self.schedules = ReportSchedules(
            self,
            "Schedules",
            config=config,
            policy=policy,
            layers=self.layers,
            counters=counters,
            ledger=ledger,
            bus=bus,
            dead_letters=sweeper_dead_letters,
        )
        self.ledger = LedgerFunction(
            self,
            "Ledger",
            config=config,
            layers=self.layers,
            counters=counters,
            ledger=ledger,
            bus=bus,
            failures=ledger_failures,
        )
        self.ledger_denials = DenialLedgerFunction(
            self, "LedgerDenials", config=config, layers=self.layers, ledger=ledger, queue=denials_queue
        )
        self.budget_alarms = BudgetAlarms(
            self, "BudgetAlarms", config=config, policy=policy, layers=self.layers, ledger=ledger, queue=alarm_queue
        )
        CfnOutput(
            self,
            "LedgerFunctionName",
            value=self.ledger.function.function_name,
            description="Replay the ledger failure queue through it: paymaster ledger replay --function <this>",
        )

        CfnOutput(
            self,
            "ApiUrl",
            value=self.api.url,
            description="OpenAI base_url for apps (SigV4-sign requests for service execute-api)",
        )
        CfnOutput(
            self,
            "InvokeArn",
            value=self.api.invoke_arn,
            description="An app's role needs execute-api:Invoke on this ARN to call the gateway",
        )
