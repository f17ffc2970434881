"""Reproduce layers/tokenizers/tiktoken from the npm package tiktoken (MIT), pinned below.

The package's `encoders/<name>.json` holds the BPE ranks of tiktoken's `.tiktoken` files in a
compact form: each line of `bpe_ranks` is "<pat> <first rank> <token> <token> ...", tokens in
base64, ranks consecutive. Expanded to one "<token> <rank>" line per token, the result is
byte-identical to the file tiktoken downloads. Each file must match the sha256 that tiktoken's
own `tiktoken_ext.openai_public` declares before it is written under tiktoken's cache name
(sha1 of the blob URL), so a wrong package, version or conversion fails here, not at run time.

Needs npm; the only network access is `npm pack` from the npm registry. Run with the project's
venv (it reads the declared URLs and hashes from the installed tiktoken):

    .venv/bin/python scripts/fetch_tiktoken_files.py
"""

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from unittest import mock

from tiktoken_ext import openai_public  # type: ignore[import-untyped]

from paymaster.adapters.tokenizer import SHIPPED_FILES

PACKAGE = "tiktoken@1.0.22"
PACKAGE_INTEGRITY = "sha512-PKvy1rVF1RibfF3JlXBSP0Jrcw2uq3yXdgcEXtKTYn3QJ/cBRBHDnrJ5jHky+MENZ6DIPwNUGWpkVx+7joCpNA=="
OUT_DIR = Path(__file__).resolve().parents[1] / "layers" / "tokenizers" / "tiktoken"


def declared_blob(encoding_name: str) -> tuple[str, str]:
    """(URL, sha256) that tiktoken's constructor for `encoding_name` would download and check."""
    seen: list[tuple[str, str]] = []

    def record(blobpath: str, expected_hash: str) -> dict[bytes, int]:
        seen.append((blobpath, expected_hash))
        return {}

    with mock.patch.object(openai_public, "load_tiktoken_bpe", record):
        openai_public.ENCODING_CONSTRUCTORS[encoding_name]()
    (blob,) = seen
    return blob


def npm_pack(workdir: Path) -> Path:
    """Download the pinned tarball (no install scripts run) and check its npm integrity."""
    result = subprocess.run(
        ["npm", "pack", PACKAGE, "--pack-destination", str(workdir), "--ignore-scripts", "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    (packed,) = json.loads(result.stdout)
    tarball_name: str = packed["filename"]
    if packed["integrity"] != PACKAGE_INTEGRITY:
        sys.exit(f"{PACKAGE}: integrity {packed['integrity']}, expected {PACKAGE_INTEGRITY}")
    return workdir / tarball_name


def to_tiktoken_file(ranks_json: bytes) -> bytes:
    """Expand the package's compact `bpe_ranks` into tiktoken's "<base64 token> <rank>\\n" lines."""
    lines: list[str] = []
    for row in json.loads(ranks_json)["bpe_ranks"].splitlines():
        if not row:
            continue
        _pat, first_rank, *tokens = row.split(" ")
        lines.extend(f"{token} {int(first_rank) + offset}\n" for offset, token in enumerate(tokens))
    return "".join(lines).encode()


def read_member(tarball: tarfile.TarFile, encoding_name: str) -> bytes:
    """The package's `encoders/<encoding_name>.json`."""
    member = tarball.extractfile(f"package/encoders/{encoding_name}.json")  # KeyError if absent
    if member is None:
        sys.exit(f"{PACKAGE}: encoders/{encoding_name}.json is not a regular file")
    return member.read()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(npm_pack(Path(tmp))) as tarball:
        contents = {name: to_tiktoken_file(read_member(tarball, name)) for name in SHIPPED_FILES}

    verified: dict[str, bytes] = {}
    for name, file_name in SHIPPED_FILES.items():
        url, expected_sha256 = declared_blob(name)
        cache_name = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
        if cache_name != file_name:
            sys.exit(f"{name}: tiktoken now caches {url} as {cache_name}; update SHIPPED_FILES")
        actual_sha256 = hashlib.sha256(contents[name]).hexdigest()
        if actual_sha256 != expected_sha256:
            sys.exit(f"{name}: sha256 {actual_sha256} from {PACKAGE}, tiktoken expects {expected_sha256}")
        verified[file_name] = contents[name]

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for file_name, data in verified.items():
        (OUT_DIR / file_name).write_bytes(data)
        print(f"{len(data):>10,} bytes  {(OUT_DIR / file_name).relative_to(OUT_DIR.parents[2])}")


if __name__ == "__main__":
    main()
