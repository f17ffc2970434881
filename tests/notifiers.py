"""Notifiers for tests: one that keeps every notice by team, one whose topic refuses."""

from paymaster.domain.errors import NoticeNotSentError
from paymaster.ports import Notice


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Notice]] = []

    def notify(self, team: str, notice: Notice) -> None:
        self.sent.append((team, notice))


class RefusingNotifier:
    def notify(self, team: str, notice: Notice) -> None:
        raise NoticeNotSentError(f"the topic of {team} refused the notice")
