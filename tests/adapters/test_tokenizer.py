"""Encodings load from the shipped files with every network path of tiktoken closed."""

import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tiktoken.load
import tiktoken.registry
from hypothesis import given, settings
from hypothesis import strategies as st
from tiktoken_ext import openai_public  # type: ignore[import-untyped]

from paymaster.adapters import tokenizer
from paymaster.names import ENV_TIKTOKEN_DIR

KNOWN_TOKENS = {
    "cl100k_base": {
        "hello world": [15339, 1917],
        "tiktoken is great!": [83, 1609, 5963, 374, 2294, 0],
        "": [],
    },
    "o200k_base": {
        "hello world": [24912, 2375],
        "tiktoken is great!": [83, 8251, 2488, 382, 2212, 0],
        "": [],
    },
}


class NetworkUsedError(AssertionError):
    pass


def refuse(*args: object, **kwargs: object) -> None:
    raise NetworkUsedError(f"network access attempted: {args!r}")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No sockets, no tiktoken downloads, no encoding cached by an earlier test, no layer dir."""
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setattr(tokenizer, "LAYER_TIKTOKEN_DIR", tmp_path / "no-layer")
    monkeypatch.delenv(ENV_TIKTOKEN_DIR, raising=False)
    # setenv first so that teardown also removes the value the adapter sets.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    tokenizer.encoding.cache_clear()
    yield
    tokenizer.encoding.cache_clear()


@pytest.mark.parametrize("encoding_name", sorted(KNOWN_TOKENS))
def test_shipped_files_encode_known_tokens_without_network(encoding_name: str) -> None:
    for text, token_ids in KNOWN_TOKENS[encoding_name].items():
        assert tokenizer.encoding(encoding_name).encode(text) == token_ids
        assert tokenizer.count_tokens(text, encoding_name) == len(token_ids)


def test_encoding_points_tiktoken_at_repo_files_and_loads_once() -> None:
    first = tokenizer.encoding("cl100k_base")

    assert tokenizer.encoding("cl100k_base") is first
    assert Path(os.environ["TIKTOKEN_CACHE_DIR"]) == tokenizer.REPO_TIKTOKEN_DIR


def test_special_token_text_is_counted_as_ordinary_text() -> None:
    assert tokenizer.count_tokens("<|endoftext|>", "cl100k_base") == 7


def test_env_var_names_the_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_TIKTOKEN_DIR, str(tmp_path))

    assert tokenizer.tiktoken_dir() == tmp_path


def test_layer_dir_wins_over_repo_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tokenizer, "LAYER_TIKTOKEN_DIR", tmp_path)

    assert tokenizer.tiktoken_dir() == tmp_path


def test_missing_file_raises_instead_of_downloading(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_TIKTOKEN_DIR, str(tmp_path))

    with pytest.raises(tokenizer.TokenizerFileMissingError):
        tokenizer.encoding("o200k_base")


def test_cache_dir_set_by_caller_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    with pytest.raises(tokenizer.TokenizerFileMissingError):
        tokenizer.encoding("cl100k_base")
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path)


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="r50k_base"):
        tokenizer.encoding("r50k_base")


@pytest.mark.parametrize("encoding_name", sorted(KNOWN_TOKENS))
def test_an_encoding_is_loaded_with_tiktoken_s_own_parameters_and_ranks(encoding_name: str) -> None:
    ours = tokenizer.encoding(encoding_name)
    # tiktoken's own constructor, reading the same file from the cache directory set above.
    theirs = tiktoken.Encoding(**openai_public.ENCODING_CONSTRUCTORS[encoding_name]())

    assert ours._pat_str == theirs._pat_str
    assert ours._special_tokens == theirs._special_tokens
    assert ours._mergeable_ranks == theirs._mergeable_ranks
    assert ours.n_vocab == theirs.n_vocab


def test_a_file_that_is_not_tiktoken_s_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    name = tokenizer.SHIPPED_FILES["cl100k_base"]
    original = (tokenizer.REPO_TIKTOKEN_DIR / name).read_bytes()
    (tmp_path / name).write_bytes(original.replace(b" 0\n", b" 1\n", 1))
    monkeypatch.setenv(ENV_TIKTOKEN_DIR, str(tmp_path))

    with pytest.raises(ValueError, match="sha256"):
        tokenizer.encoding("cl100k_base")


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(exclude_categories=())))  # lone surrogates too
@pytest.mark.parametrize("encoding_name", sorted(KNOWN_TOKENS))
def test_a_text_never_has_more_tokens_than_utf8_bytes(encoding_name: str, text: str) -> None:
    assert tokenizer.count_tokens(text, encoding_name) <= tokenizer.byte_bound(text)


def test_the_byte_bound_is_the_utf8_length_a_lone_surrogate_included() -> None:
    assert tokenizer.byte_bound("hello world") == 11
    assert tokenizer.byte_bound("naïve") == 6
    assert tokenizer.byte_bound("\ud800") == 3 == len("\ufffd".encode())


class Deferred:
    """A `start` for WarmingTokenCounter that keeps the work until the test runs it."""

    def __init__(self) -> None:
        self.work: list[Callable[[], None]] = []

    def __call__(self, work: Callable[[], None]) -> None:
        self.work.append(work)

    def run(self) -> None:
        while self.work:
            self.work.pop(0)()


def test_while_an_encoding_loads_texts_count_their_utf8_length_then_their_tokens() -> None:
    start = Deferred()
    counter = tokenizer.WarmingTokenCounter(start=start)

    assert counter("hello world", "o200k_base") == 11
    assert counter("naïve", "o200k_base") == 6
    start.run()
    assert counter("hello world", "o200k_base") == 2


def test_an_encoding_starts_loading_once_and_others_load_on_their_own() -> None:
    start = Deferred()
    loaded: list[str] = []
    counter = tokenizer.WarmingTokenCounter(load=loaded.append, start=start)

    for _ in range(3):
        counter("hello", "o200k_base")
    counter("hello", "cl100k_base")
    start.run()

    assert loaded == ["o200k_base", "cl100k_base"]


def test_an_encoding_that_failed_to_load_raises_where_it_is_next_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_TIKTOKEN_DIR, str(tmp_path))
    start = Deferred()
    counter = tokenizer.WarmingTokenCounter(start=start)

    assert counter("hello world", "cl100k_base") == 11
    start.run()
    with pytest.raises(tokenizer.TokenizerFileMissingError):
        counter("hello world", "cl100k_base")


def test_by_default_an_encoding_loads_in_a_background_thread() -> None:
    counter = tokenizer.WarmingTokenCounter()

    assert counter("hello world", "cl100k_base") == 11
    for thread in threading.enumerate():
        if thread.name == "paymaster-tokenizer":
            thread.join()
    assert counter("hello world", "cl100k_base") == 2
