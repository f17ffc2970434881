"""What the teams' email subscribers would receive, locally.

In AWS a team's SNS topic emails its subscribers. moto accepts an email subscription and
delivers nothing, so the local stack subscribes one queue to every team's topic
(`resources.team_topics`) and the runner's `MailBox` turns each message on it into the email the
subscribers would get: an `.eml` file under the state directory's `mail/` that any mail client
opens — From the topic, To the team's `alerts.emails`, the notice's subject and text. `paymaster
local` prints each one in the terminal as it arrives (`MailWatcher`).

SNS delivers at least once: a message already written (its SNS MessageId names the file) is not
written twice.
"""

import json
import shutil
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import IO, Any

from aws_lambda_powertools import Logger

from paymaster import names
from paymaster.domain.policy import Policy

logger = Logger(service="paymaster-local-mail")

SENDER = "paymaster budget alerts <no-reply@sns.amazonaws.com>"  # as SNS sends an email notification
WAIT_S = 1
POLL_S = 0.5
# RFC 5322's limit rather than the 78-character folding default: a subject a little longer than
# 70 characters stays on its own line, as SNS's emails keep it.
EML = default.clone(max_line_length=998)


def empty_mailbox(mail_dir: Path) -> None:
    """A stack's mailbox starts empty: its stand-in has no history, and an earlier run's emails
    would otherwise be printed (and counted by `make demo`) as if they had just been sent."""
    shutil.rmtree(mail_dir, ignore_errors=True)


def team_of_topic(topic_arn: str, policy: Policy) -> str | None:
    name = topic_arn.rsplit(":", 1)[-1]
    return next((team for team in policy.teams if names.alert_topic_name(team) == name), None)


def email_message(envelope: dict[str, Any], policy: Policy) -> EmailMessage:
    """The email a team's subscribers would receive for one SNS notification (its JSON envelope)."""
    team = team_of_topic(envelope["TopicArn"], policy)
    recipients = [str(address) for address in policy.teams[team].alerts.emails] if team else []
    message = EmailMessage(policy=EML)
    message["From"] = SENDER
    message["To"] = ", ".join(recipients) or f"(no subscribers: {envelope['TopicArn']})"
    message["Subject"] = envelope.get("Subject") or "paymaster"
    sent = envelope.get("Timestamp")
    when = datetime.fromisoformat(sent.replace("Z", "+00:00")) if sent else datetime.now(UTC)
    message["Date"] = format_datetime(when)
    message["Message-ID"] = f"<{envelope['MessageId']}@paymaster.local>"
    message["X-Paymaster-Team"] = team or "-"
    message.set_content(envelope["Message"])
    return message


def eml_path(mail_dir: Path, message: EmailMessage) -> Path:
    """`mail/20261204T093000Z-search-1b2c3d4e.eml`: in the order they were sent."""
    when = parsedate_to_datetime(str(message["Date"])).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    message_id = str(message["Message-ID"]).strip("<>").split("@", 1)[0][:8]
    return mail_dir / f"{when}-{message['X-Paymaster-Team']}-{message_id}.eml"


class MailBox:
    """The local mail queue → `.eml` files, as a team's subscribers would receive them."""

    def __init__(self, sqs: Any, queue_url: str, mail_dir: Path, policy: Policy) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._mail_dir = mail_dir
        self._policy = policy

    def poll_once(self, wait_s: int = WAIT_S) -> list[Path]:
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s
        ).get("Messages", [])
        written = []
        for message in messages:
            email = email_message(json.loads(message["Body"]), self._policy)
            path = eml_path(self._mail_dir, email)
            if not path.exists():
                self._mail_dir.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(".part")
                partial.write_bytes(email.as_bytes())
                partial.rename(path)  # a watcher never reads half a message
                written.append(path)
                logger.info("mail", to=email["To"], subject=email["Subject"], file=str(path))
            self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
        return written

    def run(self, stopped: threading.Event) -> None:
        while not stopped.is_set():
            try:
                self.poll_once()
            except Exception:
                logger.exception("reading the mail queue failed; reading it again")
                stopped.wait(WAIT_S)


def render(path: Path) -> str:
    """An `.eml` file as the terminal shows it: the headers a reader looks at, then the text."""
    from email import message_from_bytes  # noqa: PLC0415

    message = message_from_bytes(path.read_bytes(), policy=EML)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    rule = "─" * 72
    return (
        f"{rule}\n📧 To: {message['To']}\n   Subject: {message['Subject']}\n   Date: {message['Date']}"
        f"   ({path})\n{rule}\n{text.rstrip()}\n{rule}"
    )


class MailWatcher:
    """Prints each `.eml` file that appears in `mail_dir`, once, in the order they were written."""

    def __init__(self, mail_dir: Path, out: IO[str]) -> None:
        self._mail_dir = mail_dir
        self._out = out
        self._seen: set[Path] = set()

    def print_new(self) -> list[Path]:
        new = sorted(set(self._mail_dir.glob("*.eml")) - self._seen) if self._mail_dir.exists() else []
        for path in new:
            print(render(path), file=self._out, flush=True)
            self._seen.add(path)
        return new

    def run(self, stopped: threading.Event) -> None:
        while not stopped.wait(POLL_S):
            self.print_new()
