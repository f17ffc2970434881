"""The gateway Lambda: the ASGI app behind Lambda Web Adapter, streaming."""

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from paymaster import names, schema
from paymaster.domain.policy import Policy
from paymaster_infra.config import AppConfig
from paymaster_infra.counter_access import grant_counter_store, grant_prompt_puts
from paymaster_infra.lambda_defaults import TIMEOUT, default_function
from paymaster_infra.layers import POLICY_FILE, TIKTOKEN_DIR, GatewayLayers
from paymaster_infra.provider_access import ProviderAccess
from paymaster_infra.web_adapter import HANDLER, web_adapter_environment

# In AWS the caller is the IAM principal API Gateway verified, read from the request context.
IDENTITY_FROM_REQUEST_CONTEXT = "request-context"
READ_LEDGER = ("dynamodb:GetItem", "dynamodb:Query")
# Every partition key the gateway may read in the ledger: the rollups', never an entry's (`CALLS#…`).
ROLLUPS_ONLY = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{schema.ROLLUP_PREFIX}*"]}}
# What the gateway needs after a provider's total timeout: settle the hold and answer.
SETTLE_MARGIN_S = 15


def check_provider_timeouts(policy: Policy, function_timeout_s: float) -> None:
    """Every provider must give up before the function is killed, or a hold would be left for
    the sweeper and the caller would get API Gateway's 5xx instead of the gateway's answer."""
    for name, provider in policy.providers.items():
        if provider.timeouts.total_s + SETTLE_MARGIN_S > function_timeout_s:
            raise ValueError(
                f"provider {name!r}: timeouts.total_s {provider.timeouts.total_s:g} s leaves less than "
                f"{SETTLE_MARGIN_S} s of the gateway function's {function_timeout_s:g} s timeout"
            )


def read_rollups_only(ledger: dynamodb.ITable) -> iam.PolicyStatement:
    """The gateway reads the ledger's rollups for GET /v1/usage, and nothing else of the ledger.

    Written by hand because no `grant_*` method scopes by key: `table.grant_read_data` would also
    allow Scan, BatchGetItem and the request-id index, and so every call's entry — caller ARNs,
    metadata — which a gateway has no need to read. The ledger function alone writes the table.
    The resource is the table only (no `/index/*`), and IAM refuses a GetItem or Query whose
    partition key does not start with `SPEND#`.
    """
    return iam.PolicyStatement(actions=list(READ_LEDGER), resources=[ledger.table_arn], conditions=ROLLUPS_ONLY)


class GatewayFunction(Construct):
    """One function serves every `/v1/*` route.

    It may use the counters and bus, read the ledger's rollups (`read_rollups_only`), put prompt
    audit records (never read them), send to the settlement queue what the counters could not take,
    and call the providers of the policy it is deployed with: that policy's Bedrock models and
    provider API key secrets (`ProviderAccess`).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        policy: Policy,
        layers: GatewayLayers,
        counters: dynamodb.ITable,
        ledger: dynamodb.ITable,
        prompts: dynamodb.ITable,
        bus: events.IEventBus,
        settlement_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        check_provider_timeouts(policy, TIMEOUT.to_seconds())
        self.function = default_function(
            self,
            "Function",
            description="paymaster gateway: identify, admit, route, call, settle, publish",
            code_dir=config.gateway_code_dir,
            handler=HANDLER,
            layers=layers.all,
            environment={
                **web_adapter_environment(),
                names.ENV_COUNTERS_TABLE: counters.table_name,
                names.ENV_LEDGER_TABLE: ledger.table_name,
                names.ENV_PROMPTS_TABLE: prompts.table_name,
                names.ENV_EVENT_BUS: bus.event_bus_name,
                names.ENV_SETTLEMENT_QUEUE_URL: settlement_queue.queue_url,
                names.ENV_POLICY_FILE: POLICY_FILE,
                names.ENV_TIKTOKEN_DIR: TIKTOKEN_DIR,
                names.ENV_IDENTITY: IDENTITY_FROM_REQUEST_CONTEXT,
                # A Lambda execution environment serves one request at a time.
                names.ENV_ONE_REQUEST_AT_A_TIME: "true",
                # The CloudWatch namespace of the EMF lines the gateway prints (docs/METRICS.md).
                names.ENV_METRICS_NAMESPACE: names.METRICS_NAMESPACE,
            },
            reserved_concurrency=config.deployment.gateway_reserved_concurrency,
        )
        grant_counter_store(counters, self.function)
        self.function.add_to_role_policy(read_rollups_only(ledger))
        grant_prompt_puts(prompts, self.function)
        bus.grant_put_events_to(self.function)
        settlement_queue.grant_send_messages(self.function)
        self.provider_access = ProviderAccess(self, "ProviderAccess", policy=policy, function=self.function)
