"""The settlement-retry function: applies the settlements the gateway queued, until they land."""

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from paymaster import names
from paymaster_infra.config import AppConfig
from paymaster_infra.counter_access import grant_prompt_puts, grant_transactions
from paymaster_infra.lambda_defaults import EVENT_HANDLER, default_function
from paymaster_infra.layers import POLICY_FILE, GatewayLayers
from paymaster_infra.settlement_queue import CONSUMER_BATCH_SIZE, CONSUMER_TIMEOUT

# Batches in flight at once. When the store is back after an outage the queue holds a backlog;
# this drains it at a few hundred settlements a second while leaving the account's concurrency
# to the gateway and the hot counters to live traffic (settlements and admissions touching one
# counter cancel each other's transactions). The event source stops reading at the limit, so,
# unlike reserved concurrency, no message is throttled and counted as a failed delivery.
MAX_CONCURRENCY = 5


class SettlementRetryFunction(Construct):
    """Reads the settlement queue in batches and reports each settlement that failed, so that only
    those are delivered again (and dead-lettered after `names.SETTLEMENT_MAX_RECEIVES`).

    It mounts the core package, its dependencies and the policy file (`Settings` requires one;
    the function does not read it): not the tokenizer files, which it does not count with, nor
    Lambda Web Adapter, an extension that would wait for a web app this function does not run.
    It may reserve and settle on the counters table, put the prompt records settlements carry, and
    consume the queue; nothing else.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        layers: GatewayLayers,
        counters: dynamodb.ITable,
        prompts: dynamodb.ITable,
        queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = default_function(
            self,
            "Function",
            description="paymaster settlement retry: applies settlements the counter store could not take",
            code_dir=config.settlement_retry_code_dir,
            handler=EVENT_HANDLER,
            layers=[*layers.python, layers.policy],
            environment={
                names.ENV_COUNTERS_TABLE: counters.table_name,
                names.ENV_PROMPTS_TABLE: prompts.table_name,
                # Required by Settings; the function receives from the queue through its event source.
                names.ENV_SETTLEMENT_QUEUE_URL: queue.queue_url,
                names.ENV_POLICY_FILE: POLICY_FILE,
            },
            timeout=CONSUMER_TIMEOUT,
        )
        grant_transactions(counters, self.function)
        grant_prompt_puts(prompts, self.function)
        self.function.add_event_source(
            event_sources.SqsEventSource(
                queue,
                batch_size=CONSUMER_BATCH_SIZE,
                report_batch_item_failures=True,
                max_concurrency=MAX_CONCURRENCY,
            )
        )
