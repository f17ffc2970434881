"""DynamoDB tables: counters (windows, buckets, reservations), the ledger and the prompt audit
records, as `paymaster.schema` defines them — the same definitions the local stack creates its
tables from."""

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from paymaster import schema

_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER}


class CounterTables(Construct):
    """Every table on demand, with point-in-time recovery and deletion protection, retained.

    Items expire through TTL (a counter once its window is over, a reservation and a ledger entry
    after their retention, a prompt record after its team's `retention_days`). The counters'
    stream carries old and new images so that the ledger and the cost events are derived from
    settled requests off the hot path. The prompts table holds what callers wrote: it is encrypted
    with the account's KMS key for DynamoDB (`aws/dynamodb`), so every use of the key is in
    CloudTrail, and no function may read it (docs/LEDGER.md, "Prompt audit record").
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.counters = _table(self, schema.COUNTERS)
        self.ledger = _table(self, schema.LEDGER)
        self.prompts = _table(self, schema.PROMPTS, encryption=dynamodb.TableEncryption.AWS_MANAGED)


def _attribute(attribute: schema.Attribute) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=attribute.name, type=_TYPES[attribute.type])


def _table(
    scope: Construct, definition: schema.Table, *, encryption: dynamodb.TableEncryption | None = None
) -> dynamodb.Table:
    table = dynamodb.Table(
        scope,
        definition.construct_id,
        partition_key=_attribute(definition.partition_key),
        sort_key=_attribute(definition.sort_key),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        time_to_live_attribute=definition.ttl_attribute,
        stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES if definition.stream else None,
        deletion_protection=True,
        encryption=encryption,
        removal_policy=RemovalPolicy.RETAIN,
    )
    for index in definition.indexes:
        table.add_global_secondary_index(
            index_name=index.name,
            partition_key=_attribute(index.partition_key),
            sort_key=_attribute(index.sort_key),
            projection_type=dynamodb.ProjectionType.ALL,
        )
    return table
