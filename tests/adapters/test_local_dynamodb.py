"""The local DynamoDB stand-in: transactions all or nothing at a cost flat in the table's size,
and ClientRequestToken honoured as DynamoDB honours it."""

import gc
from collections.abc import Callable, Iterator
from threading import Thread
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import Table

from paymaster_local import dynamodb_transactions
from paymaster_local.aws import TOKEN_WINDOW_S, make_moto_server
from paymaster_local.stack import free_port

TABLE = "standin-test"


def client(url: str) -> Any:
    return boto3.client(
        "dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local"
    )


@pytest.fixture
def dynamodb(aws_url: str) -> Any:
    httpx.post(f"{aws_url}/moto-api/reset").raise_for_status()
    return fresh_table(client(aws_url))


def fresh_table(dynamodb: Any) -> Any:
    dynamodb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return dynamodb


def add(pk: str, amount: int, *, at_most: int | None = None) -> dict[str, Any]:
    update: dict[str, Any] = {
        "TableName": TABLE,
        "Key": {"pk": {"S": pk}},
        "UpdateExpression": "ADD n :amount",
        "ExpressionAttributeValues": {":amount": {"N": str(amount)}},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if at_most is not None:
        update["ConditionExpression"] = "attribute_not_exists(n) OR n <= :room"
        update["ExpressionAttributeValues"][":room"] = {"N": str(at_most - amount)}
    return {"Update": update}


def items(dynamodb: Any) -> dict[str, dict[str, Any]]:
    return {item["pk"]["S"]: item for item in dynamodb.scan(TableName=TABLE)["Items"]}


def stream_records(dynamodb: Any, url: str) -> int:
    arn = dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    streams = boto3.client(
        "dynamodbstreams",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    return len(streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"])


def test_a_transaction_applies_every_write(dynamodb: Any) -> None:
    dynamodb.transact_write_items(TransactItems=[add("a", 2), add("b", 3, at_most=10)])

    assert {pk: item["n"]["N"] for pk, item in items(dynamodb).items()} == {"a": "2", "b": "3"}


def test_a_failed_condition_cancels_the_whole_transaction_and_changes_nothing(dynamodb: Any, aws_url: str) -> None:
    dynamodb.transact_write_items(TransactItems=[add("a", 1), add("b", 9)])
    before, records_before = items(dynamodb), stream_records(dynamodb, aws_url)

    with pytest.raises(ClientError) as cancelled:
        dynamodb.transact_write_items(TransactItems=[add("a", 5), add("b", 5, at_most=10), add("c", 1)])

    reasons = cancelled.value.response["CancellationReasons"]
    assert [reason["Code"] for reason in reasons] == ["None", "ConditionalCheckFailed", "None"]
    assert reasons[1]["Item"]["n"] == {"N": "9"}
    assert items(dynamodb) == before
    assert stream_records(dynamodb, aws_url) == records_before


def test_a_write_that_fails_while_applying_puts_back_every_item_it_touched(dynamodb: Any, aws_url: str) -> None:
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "text"}, "n": {"S": "not a number"}})
    dynamodb.transact_write_items(TransactItems=[add("a", 1)])
    before, records_before = items(dynamodb), stream_records(dynamodb, aws_url)

    # ADD to a string passes every condition and fails only when applied, after "a" and "new".
    with pytest.raises(ClientError) as failed:
        dynamodb.transact_write_items(TransactItems=[add("a", 5), add("new", 1), add("text", 1)])

    assert failed.value.response["Error"]["Code"] == "ValidationException"
    assert items(dynamodb) == before
    assert stream_records(dynamodb, aws_url) == records_before


def test_a_transaction_backs_up_only_the_items_it_touches(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for start in range(0, 500, 25):
        dynamodb.transact_write_items(TransactItems=[add(f"filler-{i}", 1) for i in range(start, start + 25)])
    copied: list[object] = []
    deepcopy = dynamodb_transactions.copy.deepcopy

    def counting(value: object, *args: Any) -> object:
        copied.append(value)
        return deepcopy(value, *args)

    monkeypatch.setattr(dynamodb_transactions.copy, "deepcopy", counting)

    dynamodb.transact_write_items(TransactItems=[add("filler-1", 1), add("filler-2", 1), add("fresh", 1)])

    assert not [value for value in copied if isinstance(value, Table)]  # moto copied the whole table
    assert {value.hash_key.value for value in copied if isinstance(value, Item)} == {"filler-1", "filler-2"}


def test_updating_one_item_over_and_over_leaves_no_items_behind(dynamodb: Any) -> None:
    """moto records every Item it makes, copies included (BaseModel.instances_tracked), so the
    stand-in grew by every copy an update made, forever. The copies must die with the request."""

    def live_items() -> int:
        gc.collect()
        return sum(1 for value in gc.get_objects() if isinstance(value, Item))

    dynamodb.transact_write_items(TransactItems=[add("counter", 1), add("other", 1)])
    before = live_items()
    for _ in range(40):
        dynamodb.transact_write_items(TransactItems=[add("counter", 1), add("other", 1)])
        dynamodb.update_item(**add("counter", 1)["Update"])

    assert live_items() - before < 5  # the two items themselves, whatever else runs beside
    assert dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "counter"}})["Item"]["n"] == {"N": "81"}


def test_two_writes_to_one_item_in_one_transaction_are_refused(dynamodb: Any) -> None:
    with pytest.raises(ClientError) as refused:
        dynamodb.transact_write_items(TransactItems=[add("a", 1), add("a", 2)])

    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert items(dynamodb) == {}


def test_a_retry_with_the_same_client_token_is_answered_without_applying_it_again(dynamodb: Any) -> None:
    dynamodb.transact_write_items(TransactItems=[add("a", 2)], ClientRequestToken="token-1")
    dynamodb.transact_write_items(TransactItems=[add("a", 2)], ClientRequestToken="token-1")

    assert items(dynamodb)["a"]["n"] == {"N": "2"}


def test_the_same_client_token_with_another_request_is_a_parameter_mismatch(dynamodb: Any) -> None:
    dynamodb.transact_write_items(TransactItems=[add("a", 2)], ClientRequestToken="token-1")

    with pytest.raises(ClientError) as mismatch:
        dynamodb.transact_write_items(TransactItems=[add("a", 3)], ClientRequestToken="token-1")

    assert mismatch.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
    assert items(dynamodb)["a"]["n"] == {"N": "2"}


def test_a_cancelled_transaction_is_applied_when_retried_with_its_token(dynamodb: Any) -> None:
    dynamodb.transact_write_items(TransactItems=[add("a", 9)])
    with pytest.raises(ClientError):
        dynamodb.transact_write_items(TransactItems=[add("a", 5, at_most=10)], ClientRequestToken="token-1")
    dynamodb.transact_write_items(TransactItems=[add("a", -9)])

    dynamodb.transact_write_items(TransactItems=[add("a", 5, at_most=10)], ClientRequestToken="token-1")

    assert items(dynamodb)["a"]["n"] == {"N": "5"}


@pytest.fixture
def clocked_server() -> Iterator[tuple[Any, Callable[[float], None]]]:
    """A stand-in of its own whose token clock the test moves."""
    now = [0.0]
    server = make_moto_server("127.0.0.1", free_port(), clock=lambda: now[0])
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    httpx.post(f"{url}/moto-api/reset").raise_for_status()

    def advance(seconds: float) -> None:
        now[0] += seconds

    yield fresh_table(client(url)), advance
    server.shutdown()


def test_a_client_token_is_forgotten_after_the_idempotency_window(
    clocked_server: tuple[Any, Callable[[float], None]],
) -> None:
    dynamodb, advance = clocked_server
    dynamodb.transact_write_items(TransactItems=[add("a", 2)], ClientRequestToken="token-1")
    advance(TOKEN_WINDOW_S - 1)
    dynamodb.transact_write_items(TransactItems=[add("a", 2)], ClientRequestToken="token-1")
    assert items(dynamodb)["a"]["n"] == {"N": "2"}

    advance(2)
    dynamodb.transact_write_items(TransactItems=[add("a", 2)], ClientRequestToken="token-1")

    assert items(dynamodb)["a"]["n"] == {"N": "4"}
