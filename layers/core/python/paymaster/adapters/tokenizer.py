"""Token counts from tiktoken, read from BPE files paymaster ships: never from the network.

tiktoken looks for `$TIKTOKEN_CACHE_DIR/<sha1 of the blob URL>` before it downloads anything.
The first call to `encoding` points TIKTOKEN_CACHE_DIR (unless the caller already set it) at
the first of:

1. the directory named by `$PAYMASTER_TIKTOKEN_DIR`;
2. `/opt/tiktoken`, where the tokenizers Lambda layer puts `layers/tokenizers/tiktoken`;
3. `layers/tokenizers/tiktoken` in the source tree.

An encoding whose file is not in that directory is refused: a missing file is an error, not a
download. `scripts/fetch_tiktoken_files.py` regenerates the files.
"""

import functools
import os
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

    Loading costs about 0.4 s (cl100k_base) / 0.9 s (o200k_base), so it happens on first use,
    not at import. Raises ValueError for any other name and TokenizerFileMissingError when the
    file is absent, rather than letting tiktoken download it.
    """
    file_name = SHIPPED_FILES.get(name)
    if file_name is None:
        raise ValueError(f"unknown encoding {name!r}; paymaster ships {sorted(SHIPPED_FILES)}")
    cache_dir = Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tiktoken_dir())))
    if not (cache_dir / file_name).is_file():
        raise TokenizerFileMissingError(name, cache_dir / file_name)
    return tiktoken.get_encoding(name)


def count_tokens(text: str, encoding_name: str) -> int:
    """Tokens in `text` under `encoding_name`; special-token text such as "<|endoftext|>" counts
    as ordinary text instead of raising.

    Example: "hello world" is 2 tokens in both cl100k_base and o200k_base.
    """
    return len(encoding(encoding_name).encode_ordinary(text))
