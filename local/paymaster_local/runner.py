"""What Lambda's event source mappings do in AWS, done locally: poll a queue, invoke a handler.

moto runs no Lambda code and delivers nothing to one, so the local stack runs this process next
to the gateway. It long-polls each queue, hands the messages to the same handler the function
runs in AWS as an SQS event (`Records`, up to 10), and deletes the ones the handler did not
report in `batchItemFailures`. A failed record stays on the queue: it comes back after the
queue's visibility timeout and, after its maxReceiveCount, moves to its dead-letter queue — as
in AWS.

    python -m paymaster_local.runner   (environment: the gateway's, as the local stack sets it)
"""

import hashlib
import importlib.util
import os
import signal
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from aws_lambda_powertools import Logger

from paymaster import names

logger = Logger(service="paymaster-local-runner")

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
WAIT_S = 1
BATCH_SIZE = 10

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class LambdaContext:
    """The part of Lambda's context object that handlers and Powertools read."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:local"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def load_handler(function: str, module: str = "app", attribute: str = "handler") -> Handler:
    """`functions/<function>/<module>.py`'s handler, imported as Lambda would import it."""
    path = FUNCTIONS / function / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"paymaster_function_{function}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no handler module at {path}")
    loaded: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    handler: Handler = getattr(loaded, attribute)
    return handler


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


def main() -> None:
    region = os.environ.get(names.ENV_REGION, names.LOCAL_REGION)
    sqs = boto3.client("sqs", region_name=region)
    consumers = [
        QueueConsumer(
            sqs,
            os.environ[names.ENV_SETTLEMENT_QUEUE_URL],
            load_handler("settlement_retry"),
            "settlement-retry",
            region,
        )
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
