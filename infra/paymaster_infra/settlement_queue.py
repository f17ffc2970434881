"""The settlement queue: settlements the counter store could not take now, kept until they land.

A message is money owed to a counter (a settlement, or a release of a hold), so the queue and its
dead-letter queue live with the tables and are retained with them.
"""

from typing import Any

from aws_cdk import Duration, RemovalPolicies
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from paymaster import names

# SQS's longest: an operator has two weeks to replay what reached the dead-letter queue.
RETENTION = Duration.days(14)

# How the queue is consumed (by the settlement-retry function), which its visibility timeout
# must fit. A batch is applied one settlement after another; with the store not answering, each
# gives up after the counter store's 3 attempts × (1 s to connect + 2 s to answer) ≈ 9 s, so
# 10 settlements take about 90 s, and a cold start a few more: 2 minutes. A batch that still
# runs out of time is delivered again whole, which only costs a delivery: settling is idempotent.
CONSUMER_BATCH_SIZE = 10
CONSUMER_TIMEOUT = Duration.minutes(2)
# AWS recommends at least 6× the function's timeout for a queue a Lambda event source reads, so
# that a batch Lambda retries (after throttling, say) is not redelivered while it is still running.
VISIBILITY_PER_CONSUMER_TIMEOUT = 6
VISIBILITY_TIMEOUT = Duration.seconds(VISIBILITY_PER_CONSUMER_TIMEOUT * CONSUMER_TIMEOUT.to_seconds())


class SettlementQueue(Construct):
    """A standard queue (settling is idempotent and order-free) and its dead-letter queue.

    A settlement that fails comes back after `VISIBILITY_TIMEOUT` (12 min) and is moved to the
    dead-letter queue after `names.SETTLEMENT_MAX_RECEIVES` deliveries: about two hours of a
    store that does not answer. Messages hold request ids, counter keys and amounts — and, for a
    team whose policy keeps prompts, its prompt record (docs/LEDGER.md), which waits here with its
    settlement while the store is down: whoever may receive from these queues may read those.
    SQS-managed encryption (SSE-SQS) protects them at rest without a key to manage or pay for,
    and without KMS grants for the gateway, the function and the operator who replays; TLS is
    required for every request.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = kept_queue(self, "DeadLetters")
        self.queue = kept_queue(
            self,
            "Queue",
            visibility_timeout=VISIBILITY_TIMEOUT,
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=names.SETTLEMENT_MAX_RECEIVES, queue=self.dead_letter_queue
            ),
        )
        # Queues and their TLS-only policies: a queue left behind by a deleted stack still refuses
        # plain HTTP.
        RemovalPolicies.of(self).retain()


def kept_queue(scope: Construct, construct_id: str, **options: Any) -> sqs.Queue:
    """A queue of money owed or records missed: SSE-SQS, TLS only, kept `RETENTION`."""
    return sqs.Queue(
        scope,
        construct_id,
        retention_period=RETENTION,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        **options,
    )
