"""How the gateway stack finds the state stack's resources: SSM parameters, not exports.

Passing a table from one stack to another makes CDK export its name from the state stack and
`Fn::ImportValue` it in the gateway stack; CloudFormation then refuses any change to the state
stack that would change an exported value (a table replaced, say) while the import exists. So the
state stack writes each name and ARN the gateway stack uses into an SSM parameter under
`PARAMETER_PREFIX` (`publish_state`), and the gateway stack reads them back as CloudFormation
parameters of type `AWS::SSM::Parameter::Value<String>` (`read_state`), which CloudFormation
resolves on every deploy of the gateway stack. Both stacks live in one account and region.

A parameter's name is `/paymaster/state/<field>/<attribute>`, `<field>` one of `StateResources`'.
To hand the gateway stack another resource: add a field, write it in `publish_state`, read it in
`read_state` (a queue needs its ARN; a table its name, and its stream ARN if read; a parameter
the gateway stack reads but never uses is a cfn-lint warning, W2001).
"""

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from constructs import Construct, IConstruct

PARAMETER_PREFIX = "/paymaster/state"

TABLE_NAME = "table-name"
STREAM_ARN = "stream-arn"
BUS_NAME = "bus-name"
QUEUE_ARN = "queue-arn"
TOPIC_ARN = "topic-arn"

TABLES = ("counters", "ledger", "prompts")
QUEUES = ("settlement_queue", "ledger_failures", "denials_queue", "sweeper_dead_letters", "alarm_queue")


def parameter_name(field: str, attribute: str) -> str:
    return f"{PARAMETER_PREFIX}/{field}/{attribute}"


@dataclass(frozen=True)
class StateResources:
    """What the gateway stack's constructs use from the state stack, under the names they take."""

    counters: dynamodb.ITable
    ledger: dynamodb.ITable
    prompts: dynamodb.ITable
    bus: events.IEventBus
    settlement_queue: sqs.IQueue
    ledger_failures: sqs.IQueue
    denials_queue: sqs.IQueue
    sweeper_dead_letters: sqs.IQueue
    alarm_queue: sqs.IQueue


def publish_state(scope: Construct, state: StateResources) -> None:
    """One SSM parameter per value `read_state` reads, in `scope` (the state stack).

    The parameters are not retained: they point at resources and hold no data, and a retained one
    would block the stack's re-creation (its name is fixed)."""
    values: dict[tuple[str, str], str] = {}
    for field in TABLES:
        values[(field, TABLE_NAME)] = getattr(state, field).table_name
    stream_arn = state.counters.table_stream_arn
    assert stream_arn is not None, "the counters table streams to the ledger function"
    values[("counters", STREAM_ARN)] = stream_arn
    values[("bus", BUS_NAME)] = state.bus.event_bus_name
    for field in QUEUES:
        queue: sqs.IQueue = getattr(state, field)
        values[(field, QUEUE_ARN)] = queue.queue_arn
    publish_values(scope, values)


def publish_values(scope: Construct, values: Mapping[tuple[str, str], str]) -> None:
    """An SSM parameter `/paymaster/state/<field>/<attribute>` per value, in `scope`'s stack."""
    for (field, attribute), value in values.items():
        parameter = ssm.StringParameter(
            scope,
            f"{_pascal(field)}{_pascal(attribute)}",
            parameter_name=parameter_name(field, attribute),
            string_value=value,
            description=f"paymaster state: the {field.replace('_', ' ')}'s {attribute.replace('-', ' ')}",
        )
        parameter.apply_removal_policy(RemovalPolicy.DESTROY)


def read_value(scope: Construct, field: str, attribute: str) -> str:
    """What `publish_values` wrote for `field`/`attribute`, as `scope`'s stack resolves it at deploy."""
    return ssm.StringParameter.value_for_string_parameter(scope, parameter_name(field, attribute))


def dead_letter_field(queue: IConstruct) -> str:
    """`dead_letters-Settlements-DeadLetterQueue`: a state stack queue's field, from its path."""
    return "dead_letters-" + queue.node.path.split("/", 1)[1].replace("/", "-")


def read_state(scope: Construct) -> StateResources:
    """The state stack's resources as references in `scope`'s stack, from the parameters
    `publish_state` wrote (resolved by CloudFormation when that stack deploys)."""

    def value(field: str, attribute: str) -> str:
        return read_value(scope, field, attribute)

    def table(field: str, *, streamed: bool = False) -> dynamodb.ITable:
        return dynamodb.Table.from_table_attributes(
            scope,
            f"{_pascal(field)}Table",
            table_name=value(field, TABLE_NAME),
            table_stream_arn=value(field, STREAM_ARN) if streamed else None,
        )

    def queue(field: str) -> sqs.IQueue:
        # The URL follows from the ARN (`https://sqs.<region>.<suffix>/<account>/<name>`): one
        # parameter per queue, none left unused by the functions that only need its ARN.
        return sqs.Queue.from_queue_arn(scope, _pascal(field), value(field, QUEUE_ARN))

    return StateResources(
        counters=table("counters", streamed=True),
        ledger=table("ledger"),
        prompts=table("prompts"),
        bus=events.EventBus.from_event_bus_name(scope, "Bus", value("bus", BUS_NAME)),
        settlement_queue=queue("settlement_queue"),
        ledger_failures=queue("ledger_failures"),
        denials_queue=queue("denials_queue"),
        sweeper_dead_letters=queue("sweeper_dead_letters"),
        alarm_queue=queue("alarm_queue"),
    )


def _pascal(text: str) -> str:
    return "".join(part.capitalize() for part in text.replace("-", "_").split("_"))
