"""The ledger's failure queue: where the ledger function's event source sets aside a batch of
the counters' stream that kept failing — so that no settled call leaves the ledger unseen."""

from aws_cdk import RemovalPolicies
from constructs import Construct

from paymaster_infra.nag import acknowledge
from paymaster_infra.settlement_queue import kept_queue


class LedgerFailureQueue(Construct):
    """A standard queue, SSE-SQS, TLS only, 14 days, retained with the tables.

    Each message is Lambda's on-failure record for a batch that failed every retry: the shard and
    the range of sequence numbers, not the records (the stream keeps those 24 hours; the
    reservations themselves stay in the counters table for 30 days, and an entry is rebuilt from
    one with the same conditional write, docs/LEDGER.md). An alarm on its depth tells an operator.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.queue = kept_queue(self, "Queue")
        RemovalPolicies.of(self).retain()
        acknowledge(
            self.queue,
            {
                "AwsSolutions-SQS3": (
                    "This queue is itself where failures end: the on-failure destination of the ledger "
                    "function's stream event source. A dead-letter queue behind it would only move the "
                    "same pointer again."
                )
            },
        )
