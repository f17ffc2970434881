"""What the fake providers say, how they split it and what it costs — the same for all of them.

Chat. The reply is ``"Echo:"`` followed by the words of the last user message — or of the last
tool result, when the conversation ends with one — (whitespace collapsed), cut to the request's
max tokens. One word is one token, so a stream sends one delta per word.

Example: messages [system "be brief", user "tell me  a joke"]
  no limit     → "Echo: tell me a joke", deltas "Echo:", " tell", " me", " a", " joke";
                 5 completion tokens, finish stop;
  max tokens 3 → "Echo: tell me", 3 completion tokens, finish length;
  prompt tokens: (2 + 3) + (4 + 3) = 12 (see `count_prompt_tokens`).

Tool calls. When the request defines tools and the last user message reads
``call <tool> <JSON object>`` naming one of them, the reply is one call of that tool with those
arguments, re-serialised by ``json.dumps`` (``", "`` and ``": "`` separators). It costs the words
of the arguments plus 1 for the name; a stream sends the arguments one word at a time. A call that
does not fit in max tokens is not made: the fake echoes instead, cut at the limit.

Example: tools [get_weather], user "call get_weather {"city":"Paris"}"
  → get_weather with arguments '{"city": "Paris"}', fragments '{"city":', ' "Paris"}';
    2 + 1 = 3 completion tokens, finish tool_calls (OpenAI) / tool_use (Anthropic, Bedrock).

In a request, a tool call counts the same (name + words of its arguments) and a tool result the
words of its text: an assistant turn [text "checking", get_weather {"city": "Paris"}] is
1 + 3 + 3 = 7 prompt tokens, a result "21 C and sunny" 4 + 3 = 7.

Embeddings. A text costs its words; its vector (`embed`) is a float32 unit vector, 8 numbers
unless the request asks for other dimensions, derived from a hash of the text alone — the same
text always gets the same vector, and fewer dimensions give the longer vector's prefix, rescaled
to unit length (as OpenAI shortens ``text-embedding-3`` vectors).
"""

import asyncio
import hashlib
import json
import math
import re
import struct
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

DEFAULT_CHUNK_DELAY_S: Final = 0.02
DEFAULT_EMBEDDING_DIMENSIONS: Final = 8
TOKENS_PER_MESSAGE: Final = 3
TOKENS_PER_TOOL_NAME: Final = 1
ECHO_PREFIX: Final = "Echo:"
CALL_VERB: Final = "call"

T = TypeVar("T")
Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Turn:
    """One message of a conversation, reduced to its role and its text.

    ``"tool"`` is a message that carries tool results (OpenAI's role ``tool``; an Anthropic or
    Bedrock user message with a ``tool_result`` / ``toolResult`` block); its text is the results'.
    """

    role: Role
    text: str


@dataclass(frozen=True)
class ToolCall:
    """A call of tool ``name`` with ``arguments``, a JSON object's text."""

    name: str
    arguments: str

    @classmethod
    def of(cls, name: str, arguments: object) -> "ToolCall":
        """The call with ``arguments`` serialised as the fake always does: ``{"city": "Paris"}``."""
        return cls(name=name, arguments=json.dumps(arguments))

    @property
    def text(self) -> str:
        """What the call counts as in a conversation: ``get_weather {"city": "Paris"}`` → 3 words."""
        return f"{self.name} {self.arguments}"

    @property
    def tokens(self) -> int:
        return TOKENS_PER_TOOL_NAME + count_tokens(self.arguments)


@dataclass(frozen=True)
class Exchange:
    """A message as Anthropic and Bedrock pair tool calls with results: its turn and the tool ids it
    calls (an assistant message) or answers (a user message's tool results)."""

    turn: Turn
    tool_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolIdMismatch:
    """Message ``index`` answers ``unexpected`` ids that the message before did not call, or leaves
    ``unanswered`` ids that it called."""

    index: int
    unexpected: tuple[str, ...]
    unanswered: tuple[str, ...]


def first_tool_id_mismatch(exchanges: Sequence[Exchange]) -> ToolIdMismatch | None:
    """The first message that does not answer exactly the calls of the assistant message before it.

    Example: [assistant calls t1 t2, user answers t1] → ToolIdMismatch(1, (), ("t2",));
    [user answers t1] → ToolIdMismatch(0, ("t1",), ()).
    """
    for index, exchange in enumerate(exchanges):
        previous = exchanges[index - 1] if index else None
        called = previous.tool_ids if previous is not None and previous.turn.role == "assistant" else ()
        answered = exchange.tool_ids if exchange.turn.role != "assistant" else ()
        unexpected = tuple(tool_id for tool_id in answered if tool_id not in called)
        unanswered = tuple(tool_id for tool_id in called if tool_id not in answered)
        if unexpected or unanswered:
            return ToolIdMismatch(index=index, unexpected=unexpected, unanswered=unanswered)
    return None


@dataclass(frozen=True)
class Reply:
    """The fake model's answer: text, or one tool call when ``tool_call`` is set.

    ``deltas`` are what a stream sends: the text's words (``"".join(deltas)`` is the text) or the
    tool call's arguments in fragments (``"".join(deltas) == tool_call.arguments``).
    """

    deltas: tuple[str, ...]
    prompt_tokens: int
    completion_tokens: int
    truncated: bool
    tool_call: ToolCall | None = None

    @property
    def text(self) -> str:
        return "".join(self.deltas)


def count_tokens(text: str) -> int:
    """Tokens in ``text``: its whitespace-separated words. ``"Echo: hi  there"`` → 3.

    The only counting rule of the fakes (prompt, completion and embeddings all use it); swap
    tiktoken in here.
    """
    return len(text.split())


def count_prompt_tokens(turns: Sequence[Turn]) -> int:
    """Tokens of every message plus `TOKENS_PER_MESSAGE` per message.

    Example: [system "be brief", user "tell me a joke"] → (2 + 3) + (4 + 3) = 12.
    """
    return sum(count_tokens(turn.text) + TOKENS_PER_MESSAGE for turn in turns)


def _requested_call(text: str, tools: Collection[str]) -> ToolCall | None:
    """The call that ``text`` asks for: ``call get_weather {"city": "Paris"}`` with get_weather among
    ``tools``; None when ``text`` is anything else (another tool, arguments not a JSON object)."""
    parts = text.split(maxsplit=2)
    if len(parts) != 3 or parts[0] != CALL_VERB or parts[1] not in tools:
        return None
    try:
        arguments = json.loads(parts[2])
    except ValueError:
        return None
    return ToolCall.of(parts[1], arguments) if isinstance(arguments, dict) else None


def compose_reply(turns: Sequence[Turn], max_tokens: int | None, tools: Collection[str] = ()) -> Reply:
    """The reply to ``turns``: a call of one of ``tools`` when the last user message asks for it,
    else the echo of the last user or tool message, keeping at most ``max_tokens`` (≥ 1) words
    (None is no limit). A conversation without either gets the bare ``"Echo:"``.
    """
    last = next((turn for turn in reversed(turns) if turn.role in ("user", "tool")), None)
    last_text = "" if last is None else last.text
    call = _requested_call(last_text, tools) if last is not None and last.role == "user" else None
    if call is not None and (max_tokens is None or call.tokens <= max_tokens):
        return Reply(
            deltas=tuple(re.findall(r"\s*\S+", call.arguments)),
            prompt_tokens=count_prompt_tokens(turns),
            completion_tokens=call.tokens,
            truncated=False,
            tool_call=call,
        )
    words = [ECHO_PREFIX, *last_text.split()]
    kept = words if max_tokens is None else words[:max_tokens]
    deltas = (kept[0], *(f" {word}" for word in kept[1:]))
    return Reply(
        deltas=deltas,
        prompt_tokens=count_prompt_tokens(turns),
        completion_tokens=count_tokens("".join(deltas)),
        truncated=len(kept) < len(words),
    )


def embed(text: str, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS, *, normalize: bool = True) -> tuple[float, ...]:
    """The vector of ``text``: ``dimensions`` float32 numbers from SHAKE-256 of the text, each in
    [-1, 1), scaled to unit length unless ``normalize`` is false.

    The numbers are float32 so that JSON floats and base64 float32 bytes carry the same vector.
    SHAKE's output for a longer length starts with its output for a shorter one, so
    ``embed(text, 4)`` is ``embed(text, 8)[:4]`` rescaled to unit length (within float32 rounding).

    Example: ``embed("hello", 2)`` → ``(-0.7372…, 0.6757…)``; ``embed("hello", 2, normalize=False)``
    → ``(-0.8578…, 0.7862…)``.
    """
    digest = hashlib.shake_256(text.encode()).digest(4 * dimensions)
    numbers = [value / 2**31 - 1 for value in struct.unpack(f">{dimensions}I", digest)]
    length = math.hypot(*numbers)
    if normalize and length:
        numbers = [number / length for number in numbers]
    return struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *numbers))


async def paced(items: Iterable[T], delay_s: float) -> AsyncIterator[T]:
    """Yield each item, sleeping ``delay_s`` between consecutive ones (not before the first).

    Example: 5 deltas at 0.02 s → the last leaves 0.08 s after the first.
    """
    for index, item in enumerate(items):
        if index:
            await asyncio.sleep(delay_s)
        yield item
