"""The EventBridge bus paymaster publishes its events to, with an archive for replay."""

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from constructs import Construct

from paymaster import names

ARCHIVE_RETENTION = Duration.days(365)


class CostEventBus(Construct):
    """A custom bus for `CostRecorded`, `RequestDenied` and `ReservationExpired` (and, with the alarms,
    `BudgetThresholdCrossed`).

    The archive keeps a year of paymaster's events, so a new consumer (a dashboard, a chargeback
    report) can be back-filled by replaying them. Bus and archive are retained with the tables.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(self, "Bus")
        self.bus.apply_removal_policy(RemovalPolicy.RETAIN)
        self.archive = self.bus.archive(
            "Archive",
            description="Every paymaster event, for replay into new consumers.",
            event_pattern=events.EventPattern(source=[names.EVENT_SOURCE]),
            retention=ARCHIVE_RETENTION,
        )
        self.archive.apply_removal_policy(RemovalPolicy.RETAIN)
        # aws-cdk-lib writes `KmsKeyIdentifier: ""` for an archive without a key, which
        # CloudFormation refuses in some regions (an open aws-cdk bug): leave the property out,
        # so that the archive is encrypted with an AWS-owned key, as an archive with none is.
        archive = self.archive.node.default_child
        assert isinstance(archive, events.CfnArchive)
        archive.add_property_deletion_override("KmsKeyIdentifier")
