"""Token counts from tiktoken, read from BPE files paymaster ships: never from the network.

An encoding is read from `$TIKTOKEN_CACHE_DIR/<sha1 of the blob URL>`, where tiktoken itself
looks before it downloads anything. The first call to `encoding` points TIKTOKEN_CACHE_DIR
(unless the caller already set it) at the first of:

1. the directory named by `$PAYMASTER_TIKTOKEN_DIR`;
2. `/opt/tiktoken`, where the tokenizers Lambda layer puts `layers/tokenizers/tiktoken`;
3. `layers/tokenizers/tiktoken` in the source tree.

An encoding whose file is not in that directory is refused: a missing file is an error, not a
download. `scripts/fetch_tiktoken_files.py` regenerates the files.

Loading is paymaster's own, with tiktoken's parameters (a test pins them to tiktoken's): the
file is checked against the sha256 tiktoken declares, then parsed in one `split` instead of
line by line — o200k_base in 0.07 s instead of tiktoken's 0.3 s; building tiktoken's encoder
from it takes another 0.1–0.25 s (cl100k_base: 0.03 s + 0.07 s).

A request need not wait for that: `WarmingTokenCounter`, the gateway's counter, loads an
encoding in a background thread when it is first needed (timed so that on a cold start the
load overlaps the first request's wait for the provider), and until it is loaded counts a text
as its UTF-8 length. That is an upper bound of the token count: a byte-level BPE (cl100k_base,
o200k_base) splits the text's bytes into tokens of at least one byte each, so it never makes
more tokens than bytes (a property test checks it). Admission holds an upper bound of the input
(DESIGN §2.1, `domain/estimate.py`), and a cut stream is charged its input estimate plus its
delivered text's count, capped at the output limit (`domain/metering.py`): both stay upper
bounds. What changes for a request counted that way: it holds more than it needs (English
text is about 4 bytes a token), so near a cap it may be refused, or given a lower
`max_tokens`, where an exact count would have fitted; answered with the provider's usage it
settles exactly as always; cut without usage it is charged on the larger input estimate.
"""

import binascii
import functools
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import tiktoken

from paymaster.names import ENV_TIKTOKEN_DIR

LAYER_TIKTOKEN_DIR: Final = Path("/opt/tiktoken")
REPO_TIKTOKEN_DIR: Final = Path(__file__).resolve().parents[4] / "tokenizers" / "tiktoken"

# tiktoken's cache name for each shipped encoding: sha1 of the URL in `tiktoken_ext.openai_public`.
SHIPPED_FILES: Final = {
    "cl100k_base": "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
    "o200k_base": "fb374d419588a4632f3f557e76b4b70aebbca790",
}


@dataclass(frozen=True, slots=True)
class EncodingParameters:
    """What `tiktoken_ext.openai_public` builds an encoding with, but its ranks."""

    sha256: str
    pat_str: str
    special_tokens: dict[str, int]


ENDOFTEXT, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, ENDOFPROMPT = (
    "<|endoftext|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|endofprompt|>",
)
PARAMETERS: Final = {
    "cl100k_base": EncodingParameters(
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|"""
            r"""\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            ENDOFTEXT: 100257,
            FIM_PREFIX: 100258,
            FIM_MIDDLE: 100259,
            FIM_SUFFIX: 100260,
            ENDOFPROMPT: 100276,
        },
    ),
    "o200k_base": EncodingParameters(
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
    ),
}


class TokenizerFileMissingError(FileNotFoundError):
    """The BPE file of a shipped encoding is not in the tiktoken directory (a packaging bug)."""

    def __init__(self, encoding_name: str, path: Path) -> None:
        super().__init__(f"BPE file for {encoding_name} not found at {path}; refusing to download it")
        self.encoding_name = encoding_name
        self.path = path


def tiktoken_dir() -> Path:
    """$PAYMASTER_TIKTOKEN_DIR if set, else /opt/tiktoken if it exists, else the source tree's copy."""
    configured = os.environ.get(ENV_TIKTOKEN_DIR)
    if configured:
        return Path(configured)
    if LAYER_TIKTOKEN_DIR.is_dir():
        return LAYER_TIKTOKEN_DIR
    return REPO_TIKTOKEN_DIR


@functools.cache
def encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding `name` ("cl100k_base" or "o200k_base"), loaded once per process.

    Loading costs about 0.1 s (cl100k_base) / 0.3 s (o200k_base), so it happens on first use
    (or in `WarmingTokenCounter`'s thread), not at import. Raises ValueError for any other name
    or a file whose sha256 is not tiktoken's, and TokenizerFileMissingError when the file is
    absent, rather than letting tiktoken download it.
    """
    file_name = SHIPPED_FILES.get(name)
    if file_name is None:
        raise ValueError(f"unknown encoding {name!r}; paymaster ships {sorted(SHIPPED_FILES)}")
    path = Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tiktoken_dir()))) / file_name
    if not path.is_file():
        raise TokenizerFileMissingError(name, path)
    parameters = PARAMETERS[name]
    contents = path.read_bytes()
    if hashlib.sha256(contents).hexdigest() != parameters.sha256:
        raise ValueError(f"{path} is not tiktoken's {name} file: its sha256 differs")
    # "<base64 token> <rank>" per line; the hash vouches for the format.
    fields = contents.split()
    ranks = dict(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2]), strict=True))
    return tiktoken.Encoding(
        name, pat_str=parameters.pat_str, mergeable_ranks=ranks, special_tokens=parameters.special_tokens
    )


def count_tokens(text: str, encoding_name: str) -> int:
    """Tokens in `text` under `encoding_name`; special-token text such as "<|endoftext|>" counts
    as ordinary text instead of raising.

    Example: "hello world" is 2 tokens in both cl100k_base and o200k_base.
    """
    return len(encoding(encoding_name).encode_ordinary(text))


def byte_bound(text: str) -> int:
    """At least as many as any byte-level BPE makes of `text`: its UTF-8 length (a lone
    surrogate, which tiktoken replaces by U+FFFD, counts its 3 bytes).

    Example: "hello world" → 11 (2 tokens); "naïve" → 6.
    """
    return len(text.encode("utf-8", "surrogatepass"))


# CPython runs one thread at a time, and building tiktoken's encoder holds the interpreter for
# 0.1–0.2 s at a stretch. Started at once, the load would run before the request that needs it
# has sent its DynamoDB and provider calls, delaying them; started this much later it runs while
# that request waits for the provider's answer (docs/BENCHMARKS.md, "Cold start", measures both).
LOAD_DELAY_S: Final = 0.05


def _soon_in_a_thread(work: Callable[[], None]) -> None:
    timer = threading.Timer(LOAD_DELAY_S, work)
    timer.name = "paymaster-tokenizer"
    timer.daemon = True
    timer.start()


class WarmingTokenCounter:
    """A TokenCounter that never makes a request wait for an encoding to load.

    The first text counted under an encoding starts loading it (`start` runs the work: by
    default in a thread, `LOAD_DELAY_S` later) and is counted with `byte_bound`, as is every
    text until the encoding is loaded; then texts are counted exactly, as `count_tokens` does.
    An encoding that failed to load is tried again, and raises, where it is next used.

    Example, o200k_base at a cold start: "hello world" is counted 11 by the first request (the
    encoding starts loading) and by any other before it is loaded 0.2–0.3 s later; then 2.
    """

    def __init__(
        self, load: Callable[[str], object] = encoding, start: Callable[[Callable[[], None]], None] = _soon_in_a_thread
    ) -> None:
        self._load = load
        self._start = start
        self._loaded: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def __call__(self, text: str, encoding_name: str) -> int:
        loaded = self._loaded.get(encoding_name)
        if loaded is None:
            with self._lock:
                loaded = self._loaded.get(encoding_name)
                if loaded is None:
                    loaded = self._loaded[encoding_name] = threading.Event()
                    self._start(partial(self._load_in_background, encoding_name, loaded))
        if not loaded.is_set():
            return byte_bound(text)
        return count_tokens(text, encoding_name)

    def _load_in_background(self, encoding_name: str, loaded: threading.Event) -> None:
        try:
            self._load(encoding_name)
        except Exception:  # noqa: BLE001, S110 - nobody waits here: the next use loads again and raises
            pass
        finally:
            loaded.set()
