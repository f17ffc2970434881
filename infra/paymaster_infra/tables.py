"""DynamoDB tables: counters (windows, buckets, reservations) and the ledger."""

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from paymaster import names


class CounterTables(Construct):
    """Both tables keyed `pk`/`sk` (strings), on demand, with point-in-time recovery, retained.

    Counter items expire through TTL once their window is over. The counters' stream carries old
    and new images so that the ledger and the cost events can be derived from settled requests
    off the hot path.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.counters = _table(
            self,
            names.COUNTERS_TABLE_ID,
            time_to_live_attribute=names.TTL_ATTRIBUTE,
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
        )
        # Sparse: only reservations still held carry the key, so the sweeper reads just those.
        self.counters.add_global_secondary_index(
            index_name=names.HELD_INDEX,
            partition_key=dynamodb.Attribute(name=names.HELD_SHARD, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=names.HELD_UNTIL, type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        self.ledger = _table(self, names.LEDGER_TABLE_ID)


def _table(
    scope: Construct,
    construct_id: str,
    *,
    time_to_live_attribute: str | None = None,
    stream: dynamodb.StreamViewType | None = None,
) -> dynamodb.Table:
    return dynamodb.Table(
        scope,
        construct_id,
        partition_key=dynamodb.Attribute(name=names.PARTITION_KEY, type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name=names.SORT_KEY, type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        time_to_live_attribute=time_to_live_attribute,
        stream=stream,
        deletion_protection=True,
        removal_policy=RemovalPolicy.RETAIN,
    )
