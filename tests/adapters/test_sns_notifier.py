"""Notices to a team's SNS topic (moto), as its email subscribers would receive them locally:
the local mail queue subscribed to every team's topic, and the runner's mailbox writing `.eml`."""

import io
import json
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from paymaster import names
from paymaster.adapters.settings import NotifierSettings
from paymaster.adapters.sns_notifier import MAX_SUBJECT_CHARS, SnsNotifier, message_text, subject_line
from paymaster.domain.errors import NoticeNotSentError
from paymaster.ports import Notice
from paymaster_local.mail import MailBox, MailWatcher, empty_mailbox
from paymaster_local.resources import ENV_MAIL_QUEUE_URL, create_resources
from tests.policies import policy_with

POLICY = policy_with([])


def client(aws_url: str, service: str) -> Any:
    return boto3.client(
        service, endpoint_url=aws_url, region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
    )


@pytest.fixture
def local(aws_url: str) -> dict[str, str]:
    httpx.post(f"{aws_url}/moto-api/reset").raise_for_status()
    return create_resources(aws_url, POLICY)


@pytest.fixture
def notifier(aws_url: str, local: dict[str, str]) -> SnsNotifier:
    settings = NotifierSettings.from_environ(local)
    return SnsNotifier(client(aws_url, "sns"), settings.topic_arn_prefix)


def received(aws_url: str, local: dict[str, str]) -> list[dict[str, Any]]:
    messages = client(aws_url, "sqs").receive_message(
        QueueUrl=local[ENV_MAIL_QUEUE_URL], MaxNumberOfMessages=10, WaitTimeSeconds=1
    )
    return [json.loads(message["Body"]) for message in messages.get("Messages", [])]


def test_a_notice_reaches_its_teams_topic_only(aws_url: str, local: dict[str, str], notifier: SnsNotifier) -> None:
    notifier.notify("search", Notice("search: 80 % of search-monthly", "Spend $1,600.00 of $2,000.00."))

    [envelope] = received(aws_url, local)
    assert envelope["TopicArn"].endswith(":" + names.alert_topic_name("search"))
    assert envelope["Subject"] == "search: 80 % of search-monthly"
    assert envelope["Message"] == "Spend $1,600.00 of $2,000.00."


def test_a_team_without_a_topic_is_a_notice_not_sent(notifier: SnsNotifier) -> None:
    with pytest.raises(NoticeNotSentError, match="no-such-team"):
        notifier.notify("no-such-team", Notice("subject", "text"))


def test_an_unreachable_topic_service_is_a_notice_not_sent() -> None:
    unreachable = boto3.client(
        "sns",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="l",
        aws_secret_access_key="l",
        config=Config(retries={"max_attempts": 1}, connect_timeout=0.2),
    )
    notifier = SnsNotifier(unreachable, "arn:aws:sns:us-east-1:123456789012:paymaster-alerts-")

    with pytest.raises(NoticeNotSentError, match="could not be reached"):
        notifier.notify("search", Notice("subject", "text"))


def test_the_subject_is_made_to_fit_an_email_subject_line() -> None:
    assert subject_line("search — 80 %\nof €2,000") == "search - 80 % of EUR2,000"
    assert subject_line("ü" * 5) == "?????"
    long = subject_line("x" * 300)
    assert len(long) == MAX_SUBJECT_CHARS
    assert long.endswith("...")


def test_a_message_too_large_for_sns_is_cut_and_says_so() -> None:
    text = message_text("é" * 200_000)

    assert len(text.encode()) <= 256 * 1024
    assert text.endswith("did not fit in one SNS message]\n")


def test_team_names_sns_cannot_spell_get_distinct_topics() -> None:
    assert names.alert_topic_name("search") == "paymaster-alerts-search"
    assert names.alert_topic_suffix("ml.core") != names.alert_topic_suffix("ml_core")
    assert names.alert_topic_suffix("ml.core").startswith("ml_core-")


def test_the_mailbox_writes_each_email_once_as_its_subscribers_would_get_it(
    aws_url: str, local: dict[str, str], notifier: SnsNotifier, tmp_path: Path
) -> None:
    mailbox = MailBox(client(aws_url, "sqs"), local[ENV_MAIL_QUEUE_URL], tmp_path, POLICY)
    subject = "[paymaster] support: support-monthly reached 80 % ($400.00 of $500.00)"  # 70+ characters
    notifier.notify("support", Notice(subject, "Spend €400.\nCap $500."))

    [path] = mailbox.poll_once()
    out = io.StringIO()
    MailWatcher(tmp_path, out).print_new()

    email = message_from_bytes(path.read_bytes(), policy=default)
    assert email["To"] == ", ".join(str(address) for address in POLICY.teams["support"].alerts.emails)
    assert email["Subject"] == subject
    assert f"\nSubject: {subject}\n" in path.read_text()  # on one line, as a mail client shows it
    assert email.get_body(("plain",)).get_content() == "Spend €400.\nCap $500.\n"  # type: ignore[union-attr]
    assert "Cap $500." in out.getvalue()
    assert "support-lead@example.com" in out.getvalue()
    assert MailWatcher(tmp_path, io.StringIO()).print_new() == [path]
    assert mailbox.poll_once(wait_s=0) == []


def test_a_new_stack_starts_with_an_empty_mailbox(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "20261204T192113Z-search-1b797112.eml").write_text("an earlier run's alarm")

    empty_mailbox(mail)

    assert MailWatcher(mail, io.StringIO()).print_new() == []
    empty_mailbox(mail)  # and none at all is fine
