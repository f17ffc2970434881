"""The shipped BPE files are the ones the installed tiktoken would download, under its cache names."""

import hashlib

import pytest
from tiktoken_ext import openai_public  # type: ignore[import-untyped]

from paymaster.adapters.tokenizer import REPO_TIKTOKEN_DIR, SHIPPED_FILES


def declared_blob(monkeypatch: pytest.MonkeyPatch, encoding_name: str) -> tuple[str, str]:
    """(URL, sha256) that tiktoken's constructor for `encoding_name` passes to load_tiktoken_bpe."""
    seen: list[tuple[str, str]] = []

    def record(blobpath: str, expected_hash: str) -> dict[bytes, int]:
        seen.append((blobpath, expected_hash))
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", record)
    openai_public.ENCODING_CONSTRUCTORS[encoding_name]()
    (blob,) = seen
    return blob


@pytest.mark.parametrize("encoding_name", sorted(SHIPPED_FILES))
def test_shipped_file_has_tiktokens_cache_name_and_declared_sha256(
    monkeypatch: pytest.MonkeyPatch, encoding_name: str
) -> None:
    url, expected_sha256 = declared_blob(monkeypatch, encoding_name)
    cache_name = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()

    assert SHIPPED_FILES[encoding_name] == cache_name
    data = (REPO_TIKTOKEN_DIR / cache_name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected_sha256
