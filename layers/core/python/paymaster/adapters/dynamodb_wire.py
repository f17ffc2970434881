"""The subset of DynamoDB the counter store and the ledger call, over AWS's JSON protocol (`aws_json`).

Why not a boto3 client on the hot path: each boto3 call spends about 0.8 ms of CPU before a
byte leaves, and a request makes two or three calls; that alone was most of the gateway's own
time (docs/BENCHMARKS.md). A cancelled transaction is returned to the caller as boto3 raises it
(a ClientError with its `CancellationReasons`), whose conditions decide. Every request the counter
store and the ledger send is safe to repeat (reads; transactions with a ClientRequestToken or
conditions that a repeat fails), which `aws_json` relies on to repeat a request whose answer was
lost.
"""

from typing import Any

import httpx

from paymaster.adapters.aws_json import AwsJsonApi

TARGET_PREFIX = "DynamoDB_20120810."
# Fail fast: a rule's on_store_error decides what a slow store means, not a long wait.
DEFAULT_TIMEOUT = httpx.Timeout(2.0, connect=1.0)
CONTENT_TYPE = "application/x-amz-json-1.0"
_RETRYABLE = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}


class DynamoDBWire(AwsJsonApi):
    """The subset of a boto3 DynamoDB client the counter store and the ledger call, with the same shapes."""

    _service = "dynamodb"
    _target_prefix = TARGET_PREFIX
    _content_type = CONTENT_TYPE
    _retryable = frozenset(_RETRYABLE)
    _default_timeout = DEFAULT_TIMEOUT

    def transact_write_items(self, **body: Any) -> dict[str, Any]:
        return self.call("TransactWriteItems", body)

    def batch_get_item(self, **body: Any) -> dict[str, Any]:
        return self.call("BatchGetItem", body)

    def query(self, **body: Any) -> dict[str, Any]:
        return self.call("Query", body)

    def get_item(self, **body: Any) -> dict[str, Any]:
        return self.call("GetItem", body)

    # The scheduled jobs' reports and notice markers (`dynamodb_reports`) and the alarms' markers
    # (`dynamodb_alarms`): conditional puts, idempotent SETs and deletes, each safe to repeat.
    def put_item(self, **body: Any) -> dict[str, Any]:
        return self.call("PutItem", body)

    def update_item(self, **body: Any) -> dict[str, Any]:
        return self.call("UpdateItem", body)

    def delete_item(self, **body: Any) -> dict[str, Any]:
        return self.call("DeleteItem", body)
