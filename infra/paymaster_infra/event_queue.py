"""A queue an EventBridge rule fills with one detail-type of paymaster's events, and its
dead-letter queue: SSE-SQS, TLS only, 14 days (`settlement_queue.kept_queue`), retained.

The queue lives with the tables (state), and the rule beside it, since the queue's policy must
name the rule (a rule in the gateway stack would make the state stack depend on it).
"""

from aws_cdk import Duration, RemovalPolicies
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from paymaster import names
from paymaster_infra.settlement_queue import kept_queue


class EventQueue(Construct):
    """Every `detail_type` event on `bus` → `queue`; a message delivered `max_receives` times moves
    to `dead_letter_queue`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bus: events.IEventBus,
        detail_type: str,
        description: str,
        max_receives: int,
        visibility_timeout: Duration,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = kept_queue(self, "DeadLetters")
        self.queue = kept_queue(
            self,
            "Queue",
            visibility_timeout=visibility_timeout,
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=max_receives, queue=self.dead_letter_queue),
        )
        self.rule = events.Rule(
            self,
            "Rule",
            description=description,
            event_bus=bus,
            event_pattern=events.EventPattern(source=[names.EVENT_SOURCE], detail_type=[detail_type]),
            targets=[targets.SqsQueue(self.queue)],
        )
        RemovalPolicies.of(self).retain()
