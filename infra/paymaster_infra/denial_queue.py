"""The denials queue: every RequestDenied on the bus, kept until the denials ledger function has
recorded it (docs/LEDGER.md), with a dead-letter queue behind it.

An EventBridge rule on paymaster's bus routes `source: paymaster, detail-type: RequestDenied` to
it. The queue is a record of who was refused, so it lives with the tables and is retained; the
rule lives beside it, since the queue's policy must name the rule (a rule in the gateway stack
would make the state stack depend on it).
"""

from aws_cdk import Duration
from aws_cdk import aws_events as events
from constructs import Construct

from paymaster import names
from paymaster_infra.event_queue import EventQueue
from paymaster_infra.settlement_queue import VISIBILITY_PER_CONSUMER_TIMEOUT

# How the queue is consumed (by the denials ledger function), which its visibility timeout must
# fit: a batch is recorded one denial after another, each one transaction; with DynamoDB not
# answering each gives up after 3 attempts × 5 s, so 10 take 150 s: 3 minutes with a cold start.
CONSUMER_BATCH_SIZE = 10
CONSUMER_TIMEOUT = Duration.minutes(3)
VISIBILITY_TIMEOUT = Duration.seconds(VISIBILITY_PER_CONSUMER_TIMEOUT * CONSUMER_TIMEOUT.to_seconds())


class DenialQueue(EventQueue):
    """A standard queue (recording is idempotent and order-free) and its dead-letter queue, SSE-SQS,
    TLS only, 14 days; the rule that fills it.

    A denial that fails comes back after `VISIBILITY_TIMEOUT` (18 min) and moves to the dead-letter
    queue after `names.DENIALS_MAX_RECEIVES` deliveries: about three hours, whether the ledger does
    not answer or the message is no RequestDenied (it fails each delivery the same way).
    """

    def __init__(self, scope: Construct, construct_id: str, *, bus: events.IEventBus) -> None:
        super().__init__(
            scope,
            construct_id,
            bus=bus,
            detail_type=names.REQUEST_DENIED,
            description="Every RequestDenied, for the ledger",
            max_receives=names.DENIALS_MAX_RECEIVES,
            visibility_timeout=VISIBILITY_TIMEOUT,
        )
