"""Notices to a team's SNS topic: its email subscribers receive the subject and the text.

A team's topic is `names.alert_topic_name(team)` in the deployment's account and region, found
from `topic_arn_prefix` (`names.ENV_ALERT_TOPIC_ARN_PREFIX`) and the team's name: no lookup, no
map of every team in the environment.

What SNS takes: a subject of at most 100 printable ASCII characters on one line (an email's
subject line), a message of at most 256 KB. The subject is made to fit — other characters
replaced (`—` → `-`, `€` → `EUR`, anything else → `?`), cut with `...` — and a message too large
is cut with a note saying so, because a budget alarm half-read is better than one not sent.

A client error (the topic missing, access denied, throttled past boto3's own retries) or a
transport error raises `NoticeNotSentError`: the message that asked for the notice is delivered
again, and after its retries it waits on a dead-letter queue.

boto3 here, not the hand-rolled JSON client the gateway uses (`aws_json`): SNS speaks AWS's query
protocol, and nothing that notifies is on a request's path.
"""

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from paymaster import names
from paymaster.domain.errors import NoticeNotSentError
from paymaster.ports import Notice

MAX_SUBJECT_CHARS = 100
MAX_MESSAGE_BYTES = 256 * 1024
_CUT = "\n\n[cut: the rest of this notice did not fit in one SNS message]\n"
_REPLACEMENTS = {"—": "-", "–": "-", "€": "EUR", "≥": ">=", "≤": "<=", "→": "->", "·": "-", "’": "'"}


def subject_line(subject: str) -> str:
    """`Search — 80 % of search-monthly` → `Search - 80 % of search-monthly`; at most 100 chars."""
    text = " ".join(subject.split())
    text = "".join(_REPLACEMENTS.get(char, char if " " <= char <= "~" else "?") for char in text)
    if len(text) > MAX_SUBJECT_CHARS:
        text = text[: MAX_SUBJECT_CHARS - 3].rstrip() + "..."
    return text or "paymaster"


def message_text(text: str) -> str:
    encoded = text.encode()
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return text
    room = MAX_MESSAGE_BYTES - len(_CUT.encode())
    return encoded[:room].decode(errors="ignore") + _CUT


class SnsNotifier:
    """`client`: a boto3 SNS client."""

    def __init__(self, client: Any, topic_arn_prefix: str) -> None:
        self._client = client
        self._topic_arn_prefix = topic_arn_prefix

    def topic_arn(self, team: str) -> str:
        return self._topic_arn_prefix + names.alert_topic_suffix(team)

    def notify(self, team: str, notice: Notice) -> None:
        topic = self.topic_arn(team)
        try:
            self._client.publish(
                TopicArn=topic, Subject=subject_line(notice.subject), Message=message_text(notice.text)
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "ClientError")
            raise NoticeNotSentError(f"SNS refused the notice for team {team!r} ({topic}): {code}") from error
        except BotoCoreError as error:
            raise NoticeNotSentError(f"SNS could not be reached for team {team!r} ({topic}): {error}") from error
