"""What Lambda's event source mappings do in AWS, done locally: poll a queue or a stream, invoke
a handler.

moto runs no Lambda code and delivers nothing to one, so the local stack runs this process next
to the gateway. Two kinds of source, as in AWS:

- a queue (`QueueConsumer`): long-polled, the messages handed to the same handler the function
  runs in AWS as an SQS event (`Records`, up to 10), and the ones the handler did not report in
  `batchItemFailures` deleted. A failed record stays on the queue: it comes back after the
  queue's visibility timeout and, after its maxReceiveCount, moves to its dead-letter queue;
- a DynamoDB stream (`StreamConsumer`): each shard read in order from its start, the records
  handed to the handler as a DynamoDB Streams event, and the shard moved on to the first record
  the handler reported failed, which the next batch starts with — retried, never skipped,
  until `names.LEDGER_RETRY_ATTEMPTS` retries have failed; then it is set aside (the failure
  queue) and the shard moves past it.

And what EventBridge Scheduler does: a timer per schedule of the CDK app (`timers.py`) — the
sweeper every minute, the forecast daily, each team's digest and month close in its zone — with
the input its schedule sends, the report schedules on the schedules' clock
(`PAYMASTER_LOCAL_CLOCK_SPEED` times the real one from `PAYMASTER_LOCAL_CLOCK_START`).

    python -m paymaster_local.runner   (environment: the gateway's, as the local stack sets it)
"""

import hashlib
import json
import os
import signal
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from paymaster import names
from paymaster.adapters.policy_file import load_policy
from paymaster.domain.schedules import schedules
from paymaster.ledger_replay import stream_event
from paymaster_local.functions import Handler, LambdaContext, load_handler
from paymaster_local.mail import MailBox
from paymaster_local.resources import ENV_MAIL_DIR, ENV_MAIL_QUEUE_URL
from paymaster_local.timers import ScheduledJob, clock_from_environ, scheduled_jobs

logger = Logger(service="paymaster-local-runner")

WAIT_S = 1
BATCH_SIZE = 10
STREAM_POLL_S = 0.2  # Lambda polls a stream's shards about four times a second


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """ReceiveMessage's messages as the SQS event Lambda gives a function."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


class QueueConsumer:
    """One queue → one handler, as an event source mapping with ReportBatchItemFailures."""

    def __init__(self, sqs: Any, queue_url: str, handler: Handler, function: str, region: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._handler = handler
        self._function = function
        self._region = region
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        self._queue_arn = attributes["QueueArn"]

    def poll_once(self, wait_s: int = WAIT_S) -> int:
        """Receives one batch, invokes the handler, deletes what it handled; how many it handled.
        A handler that raises failed the whole batch: nothing is deleted."""
        answer = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=BATCH_SIZE,
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
        )
        messages = answer.get("Messages", [])
        if not messages:
            return 0
        context = LambdaContext(self._function, str(uuid.uuid4()))
        try:
            result = self._handler(sqs_event(messages, self._queue_arn, self._region), context)
        except Exception:  # as in Lambda: the invocation failed, the whole batch comes back
            logger.exception("the handler failed; its batch will be delivered again", function=self._function)
            return 0
        failed = {failure["itemIdentifier"] for failure in result.get("batchItemFailures", [])}
        done = [message for message in messages if message["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(done)],
            )
        return len(done)

    def run(self, stopped: threading.Event) -> None:
        while not stopped.is_set():
            try:
                self.poll_once()
            except Exception:
                logger.exception("the handler failed; its batch will be delivered again", function=self._function)
                stopped.wait(WAIT_S)


@dataclass
class _Shard:
    """Where a shard is read from next: its iterator, or (after a failure, or a lost iterator)
    the sequence number to read again from, or the last one done."""

    iterator: str | None = None
    retry_from: str | None = None
    after: str | None = None
    retries: int = 0


class StreamConsumer:
    """One stream → one handler, as an event source mapping with ReportBatchItemFailures,
    `retry_attempts` and an on-failure destination (`set_aside`, given Lambda's on-failure record
    for the batch). Lambda bisects a failing batch until the record that fails is alone; here the
    shard stops at the first failed record and only that one is set aside once its retries are
    spent (what comes after it was handed over and is handed over again: handlers are idempotent)."""

    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        handler: Handler,
        function: str,
        *,
        set_aside: Callable[[dict[str, Any]], None],
        batch_size: int = names.LEDGER_BATCH_SIZE,
        retry_attempts: int = names.LEDGER_RETRY_ATTEMPTS,
        start: str = "TRIM_HORIZON",
    ) -> None:
        self._streams = streams
        self._stream_arn = stream_arn
        self._handler = handler
        self._function = function
        self._set_aside = set_aside
        self._batch_size = batch_size
        self._retry_attempts = retry_attempts
        self._start = start
        self._shards: dict[str, _Shard] = {}

    def poll_once(self) -> int:
        """Reads one batch from each shard and invokes the handler; how many records it handled."""
        description = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]
        for shard in description["Shards"]:
            self._shards.setdefault(shard["ShardId"], _Shard())
        return sum(self._poll_shard(shard_id, shard) for shard_id, shard in self._shards.items())

    def run(self, stopped: threading.Event) -> None:
        while not stopped.is_set():
            try:
                handled = self.poll_once()
            except Exception:
                logger.exception("reading the stream failed; reading it again", function=self._function)
                handled = 0
            if not handled:
                stopped.wait(STREAM_POLL_S)

    def _poll_shard(self, shard_id: str, shard: _Shard) -> int:
        if shard.iterator is None:
            shard.iterator = self._iterator(shard_id, shard)
        try:
            answer = self._streams.get_records(ShardIterator=shard.iterator, Limit=self._batch_size)
        except ClientError:
            shard.iterator = None  # expired or trimmed: found again from where the shard was
            raise
        shard.iterator = answer.get("NextShardIterator")
        records: list[dict[str, Any]] = answer["Records"]
        if not records:
            return 0
        context = LambdaContext(self._function, str(uuid.uuid4()))
        try:
            result = self._handler(stream_event(records, self._stream_arn), context)
            failed = {failure["itemIdentifier"] for failure in result.get("batchItemFailures", [])}
        except Exception:  # as in Lambda: the invocation failed, the whole batch comes back
            logger.exception("the handler failed; its batch will be delivered again", function=self._function)
            failed = {records[0]["dynamodb"]["SequenceNumber"]}
        sequence = [record["dynamodb"]["SequenceNumber"] for record in records]
        if not failed:
            shard.after, shard.retry_from, shard.retries = sequence[-1], None, 0
            return len(records)
        first_failed = min(failed, key=int)
        done = sequence[: sequence.index(first_failed)]
        shard.retries = shard.retries + 1 if shard.retry_from == first_failed else 0
        shard.after = done[-1] if done else shard.after
        shard.retry_from, shard.iterator = first_failed, None
        if shard.retries >= self._retry_attempts:
            self._set_aside(self._failure_record(shard_id, records[len(done)], shard.retries + 1))
            shard.after, shard.retry_from, shard.retries = first_failed, None, 0
        return len(done)

    def _iterator(self, shard_id: str, shard: _Shard) -> str:
        where: dict[str, str] = {"ShardIteratorType": self._start}
        if shard.retry_from is not None:
            where = {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": shard.retry_from}
        elif shard.after is not None:
            where = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": shard.after}
        answer = self._streams.get_shard_iterator(StreamArn=self._stream_arn, ShardId=shard_id, **where)
        iterator: str = answer["ShardIterator"]
        return iterator

    def _failure_record(self, shard_id: str, record: dict[str, Any], invocations: int) -> dict[str, Any]:
        """What Lambda sends an on-failure destination for a stream batch: where it is, not what
        it holds (the stream keeps the record for 24 hours)."""
        sequence = record["dynamodb"]["SequenceNumber"]
        logger.error(
            "a stream record kept failing: set aside",
            function=self._function,
            sequence_number=sequence,
            keys=record["dynamodb"].get("Keys"),
        )
        return {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "requestContext": {
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": invocations,
                "functionArn": f"arn:aws:lambda:{names.LOCAL_REGION}:000000000000:function:{self._function}",
            },
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": sequence,
                "endSequenceNumber": sequence,
                "batchSize": 1,
                "streamArn": self._stream_arn,
            },
        }


def main() -> None:
    region = os.environ.get(names.ENV_REGION, names.LOCAL_REGION)
    sqs = boto3.client("sqs", region_name=region)
    counters = boto3.client("dynamodb", region_name=region).describe_table(
        TableName=os.environ[names.ENV_COUNTERS_TABLE]
    )["Table"]
    failures_url = os.environ[names.ENV_LEDGER_FAILURE_QUEUE_URL]
    policy_file = Path(os.environ[names.ENV_POLICY_FILE])
    clock = clock_from_environ(os.environ)
    consumers: list[QueueConsumer | StreamConsumer | ScheduledJob | MailBox] = [
        QueueConsumer(
            sqs,
            os.environ[names.ENV_SETTLEMENT_QUEUE_URL],
            load_handler("settlement_retry"),
            "settlement-retry",
            region,
        ),
        QueueConsumer(
            sqs, os.environ[names.ENV_DENIALS_QUEUE_URL], load_handler("ledger_denials"), "ledger-denials", region
        ),
        QueueConsumer(sqs, os.environ[names.ENV_ALARM_QUEUE_URL], load_handler("budget_alarm"), "budget-alarm", region),
        StreamConsumer(
            boto3.client("dynamodbstreams", region_name=region),
            counters["LatestStreamArn"],
            load_handler("ledger"),
            "ledger",
            set_aside=lambda record: sqs.send_message(QueueUrl=failures_url, MessageBody=json.dumps(record)),
        ),
        *scheduled_jobs(schedules(load_policy(policy_file)), load_handler, start=clock.start, speed=clock.speed),
        MailBox(sqs, os.environ[ENV_MAIL_QUEUE_URL], Path(os.environ[ENV_MAIL_DIR]), load_policy(policy_file)),
    ]
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    threads = [threading.Thread(target=consumer.run, args=(stopped,), daemon=True) for consumer in consumers]
    for thread in threads:
        thread.start()
    stopped.wait()


if __name__ == "__main__":
    main()
