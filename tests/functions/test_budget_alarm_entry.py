"""Budget alarms end to end on the stand-in: settlements on the counters table, the ledger
function reading its stream, the bus's rule filling the alarm queue, the budget-alarm function
emailing each crossing to the team's topic (whose local mail queue is what subscribers get)."""

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from paymaster import names
from paymaster.adapters.dynamodb_counters import DynamoDBCounterStore
from paymaster.adapters.policy_file import load_policy
from paymaster.composition import budget_alarms, ledger_recorder, notifier, threshold_watch
from paymaster.domain.chat import Usage
from paymaster.domain.limits import Hold
from paymaster.domain.windows import window
from paymaster.ports import Asked, CallRecord, CounterChange, Reservation, Settlement
from paymaster_local.resources import ALARMS_DLQ, ENV_MAIL_QUEUE_URL
from paymaster_local.runner import QueueConsumer, StreamConsumer, load_handler
from tests.local_aws import local_client
from tests.policies import DEMO

POLICY = load_policy(DEMO)
MONTHLY = next(rule for rule in POLICY.rules if rule.name == "search-monthly")  # $2,000, alerts at 50/80/100


@pytest.fixture
def environment(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    for name in (
        names.ENV_LEDGER_TABLE,
        names.ENV_EVENT_BUS,
        names.ENV_ALERT_TOPIC_ARN_PREFIX,
    ):
        monkeypatch.setenv(name, aws[name])
    monkeypatch.setenv(names.ENV_POLICY_FILE, str(DEMO))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    caches = (ledger_recorder, threshold_watch, budget_alarms, notifier)
    for cached in caches:
        cached.cache_clear()
    yield aws
    for cached in caches:
        cached.cache_clear()


def settle_concurrently(aws_url: str, counters_table: str, costs: list[int]) -> None:
    """One reservation per cost on search-monthly, each settled at that cost, 16 at a time."""
    store = DynamoDBCounterStore(local_client("dynamodb", aws_url), counters_table)
    now = datetime.now(UTC)
    month = window("month", MONTHLY.zone, now)

    def call(index: int) -> None:
        cost = costs[index]
        hold = Hold(MONTHLY, "team=search", month, cost, MONTHLY.cap)
        asked = Asked(now, "arn:aws:iam::111111111111:role/apps/search-ranker", "prod", reserved=cost)
        reservation = Reservation(
            f"r{index:03}", (hold,), now + timedelta(minutes=20), "search", "ranker", "gpt-4o", asked
        )
        assert store.reserve(reservation) == []
        change = CounterChange(hold.pk, hold.sk, 0, cost)
        call = CallRecord("openai/gpt-4o", ("openai/gpt-4o",), None, latency_ms=900, first_token_ms=None)
        settled = Settlement(
            reservation.request_id, (change,), "settled", cost, Usage(100, 100), billed_on="provider_usage", call=call
        )
        assert store.settle(settled)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(call, range(len(costs))))


def stream_consumer(aws: dict[str, str], aws_url: str) -> StreamConsumer:
    """The ledger function on the counters' stream from its start, as a new event source would."""
    dynamodb = local_client("dynamodb", aws_url)
    arn = dynamodb.describe_table(TableName=aws[names.ENV_COUNTERS_TABLE])["Table"]["LatestStreamArn"]
    return StreamConsumer(
        local_client("dynamodbstreams", aws_url), arn, load_handler("ledger"), "ledger", set_aside=pytest.fail
    )


def drain(consumer: StreamConsumer | QueueConsumer) -> None:
    while (consumer.poll_once() if isinstance(consumer, StreamConsumer) else consumer.poll_once(wait_s=0)) > 0:
        pass


def mail(aws: dict[str, str], aws_url: str) -> list[str]:
    """The subjects every team's subscribers received (the local mail queue), taken off it."""
    sqs = local_client("sqs", aws_url)
    subjects = []
    while messages := sqs.receive_message(QueueUrl=aws[ENV_MAIL_QUEUE_URL], MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            subjects.append(json.loads(message["Body"])["Subject"])
            sqs.delete_message(QueueUrl=aws[ENV_MAIL_QUEUE_URL], ReceiptHandle=message["ReceiptHandle"])
    return sorted(subjects)


def alarm_consumer(aws: dict[str, str], aws_url: str) -> QueueConsumer:
    sqs = local_client("sqs", aws_url)
    return QueueConsumer(sqs, aws[names.ENV_ALARM_QUEUE_URL], load_handler("budget_alarm"), "budget-alarm", "us-east-1")


def test_50_concurrent_settlements_past_80_percent_send_one_80_and_one_50_email_and_a_redelivery_none(
    environment: dict[str, str], aws_url: str
) -> None:
    settle_concurrently(aws_url, environment[names.ENV_COUNTERS_TABLE], [33_000_000] * 50)  # $1,650

    drain(stream_consumer(environment, aws_url))
    drain(alarm_consumer(environment, aws_url))
    first = mail(environment, aws_url)
    # The whole stream delivered again, as after a lost checkpoint: its crossings are published again.
    drain(stream_consumer(environment, aws_url))
    drain(alarm_consumer(environment, aws_url))

    assert len(first) == 2
    assert first[0].startswith("[paymaster] search: search-monthly reached 50 %")
    assert first[1].startswith("[paymaster] search: search-monthly reached 80 %")
    assert mail(environment, aws_url) == []


def test_an_alarm_that_cannot_be_sent_rests_on_the_dead_letter_queue_and_a_replay_sends_it(
    environment: dict[str, str], aws_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = local_client("sqs", aws_url)
    alarm_queue = environment[names.ENV_ALARM_QUEUE_URL]
    sqs.set_queue_attributes(QueueUrl=alarm_queue, Attributes={"VisibilityTimeout": "0"})
    settle_concurrently(aws_url, environment[names.ENV_COUNTERS_TABLE], [1_100_000_000])  # $1,100: 50 %
    drain(stream_consumer(environment, aws_url))
    monkeypatch.setenv(names.ENV_ALERT_TOPIC_ARN_PREFIX, "arn:aws:sns:us-east-1:123456789012:nobody-")
    consumer = alarm_consumer(environment, aws_url)

    for _ in range(names.ALARM_MAX_RECEIVES + 1):
        assert consumer.poll_once(wait_s=0) == 0

    dead_letters = sqs.get_queue_url(QueueName=ALARMS_DLQ)["QueueUrl"]
    [message] = sqs.receive_message(QueueUrl=dead_letters, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(message["Body"])["detail"]["crossing_id"].endswith("#50@1000000000")
    assert mail(environment, aws_url) == []

    # Replayed onto the alarm queue once the topic is back (sqs start-message-move-task in AWS).
    monkeypatch.setenv(names.ENV_ALERT_TOPIC_ARN_PREFIX, environment[names.ENV_ALERT_TOPIC_ARN_PREFIX])
    budget_alarms.cache_clear()
    notifier.cache_clear()
    sqs.send_message(QueueUrl=alarm_queue, MessageBody=message["Body"])
    drain(consumer)

    [subject] = mail(environment, aws_url)
    assert subject.startswith("[paymaster] search: search-monthly reached 50 %")
