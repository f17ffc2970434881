"""The recordings themselves: each one parses, is described in the README and is used by a test,
so that none goes stale unnoticed."""

import json
from pathlib import Path

import pytest

from tests.contract.recordings import RECORDINGS

README = RECORDINGS / "README.md"
RECORDED = sorted(
    path.relative_to(RECORDINGS).as_posix() for path in RECORDINGS.rglob("*") if path.is_file() and path != README
)
TESTS = Path(__file__).parent


def names(suffix: str) -> list[str]:
    return [name for name in RECORDED if name.endswith(suffix)]


def test_every_recording_is_read_by_a_contract_test() -> None:
    sources = "\n".join(path.read_text(encoding="utf-8") for path in TESTS.glob("test_*.py") if path != Path(__file__))

    assert [name for name in RECORDED if f'"{name}"' not in sources] == []


def test_every_recording_is_described_in_the_readme() -> None:
    readme = README.read_text(encoding="utf-8")

    assert [name for name in RECORDED if f"`{name}`" not in readme] == []


def test_recordings_are_json_jsonl_or_server_sent_events() -> None:
    assert [name for name in RECORDED if not name.endswith((".json", ".jsonl", ".sse"))] == []


@pytest.mark.parametrize("name", names(".json"))
def test_json_recording_parses_to_an_object(name: str) -> None:
    assert isinstance(json.loads((RECORDINGS / name).read_text(encoding="utf-8")), dict)


@pytest.mark.parametrize("name", names(".jsonl"))
def test_jsonl_recording_is_one_event_object_per_line(name: str) -> None:
    lines = (RECORDINGS / name).read_text(encoding="utf-8").splitlines()

    events = [json.loads(line) for line in lines]
    assert [type(event) is dict and len(event) for event in events] == [1] * len(lines)


@pytest.mark.parametrize("name", names(".sse"))
def test_sse_recording_is_blank_line_terminated_events_of_json_data(name: str) -> None:
    text = (RECORDINGS / name).read_text(encoding="utf-8")
    assert text.endswith("\n\n")

    for block in text[:-2].split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(fields) in ({"data"}, {"event", "data"}), block
        if fields["data"] == "[DONE]":
            assert block == text[:-2].rsplit("\n\n", 1)[-1], "[DONE] must be the last event"
            continue
        data = json.loads(fields["data"])
        assert fields.get("event", data.get("type")) == data.get("type"), "`event:` names the data's type"
