"""What the fake providers say, how they split it and what it costs — the same for both.

The reply is ``"Echo:"`` followed by the words of the last user message (whitespace collapsed),
cut to the request's max tokens. One word is one token, so a stream sends one delta per word.

Example: messages [system "be brief", user "tell me  a joke"]
  no limit     → "Echo: tell me a joke", deltas "Echo:", " tell", " me", " a", " joke";
                 5 completion tokens, finish stop;
  max tokens 3 → "Echo: tell me", 3 completion tokens, finish length;
  prompt tokens: (2 + 3) + (4 + 3) = 12 (see `count_prompt_tokens`).
"""

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

DEFAULT_CHUNK_DELAY_S: Final = 0.02
TOKENS_PER_MESSAGE: Final = 3
ECHO_PREFIX: Final = "Echo:"

T = TypeVar("T")


@dataclass(frozen=True)
class Turn:
    """One message of a conversation, reduced to its role and its text."""

    role: str
    text: str


@dataclass(frozen=True)
class Reply:
    """The fake model's answer; ``"".join(deltas) == text``."""

    deltas: tuple[str, ...]
    prompt_tokens: int
    completion_tokens: int
    truncated: bool

    @property
    def text(self) -> str:
        return "".join(self.deltas)


def count_tokens(text: str) -> int:
    """Tokens in ``text``: its whitespace-separated words. ``"Echo: hi  there"`` → 3.

    The only counting rule of the fakes (prompt and completion both use it); swap tiktoken in here.
    """
    return len(text.split())


def count_prompt_tokens(turns: Sequence[Turn]) -> int:
    """Tokens of every message plus `TOKENS_PER_MESSAGE` per message.

    Example: [system "be brief", user "tell me a joke"] → (2 + 3) + (4 + 3) = 12.
    """
    return sum(count_tokens(turn.text) + TOKENS_PER_MESSAGE for turn in turns)


def compose_reply(turns: Sequence[Turn], max_tokens: int | None) -> Reply:
    """Echo the last user message, keeping at most ``max_tokens`` (≥ 1) words; None is no limit.

    A conversation without a user message gets the bare ``"Echo:"``.
    """
    last_user_text = next((turn.text for turn in reversed(turns) if turn.role == "user"), "")
    words = [ECHO_PREFIX, *last_user_text.split()]
    kept = words if max_tokens is None else words[:max_tokens]
    deltas = (kept[0], *(f" {word}" for word in kept[1:]))
    return Reply(
        deltas=deltas,
        prompt_tokens=count_prompt_tokens(turns),
        completion_tokens=count_tokens("".join(deltas)),
        truncated=len(kept) < len(words),
    )


async def paced(items: Iterable[T], delay_s: float) -> AsyncIterator[T]:
    """Yield each item, sleeping ``delay_s`` between consecutive ones (not before the first).

    Example: 5 deltas at 0.02 s → the last leaves 0.08 s after the first.
    """
    for index, item in enumerate(items):
        if index:
            await asyncio.sleep(delay_s)
        yield item
