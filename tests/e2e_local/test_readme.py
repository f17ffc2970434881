"""The README's snippet, run as an app would run it: a separate process with AWS_PROFILE set."""

import os
import re
import subprocess
import sys

from paymaster_local.stack import LocalStack
from tests.e2e_local.conftest import REPO


def test_readme_snippet_streams_a_completion_with_a_generated_profile(stack: LocalStack) -> None:
    readme = (REPO / "README.md").read_text()
    snippet = re.search(r"## How an app calls it.*?```python\n(.*?)```", readme, re.DOTALL)
    assert snippet is not None
    code = snippet[1].replace("http://127.0.0.1:8787", stack.url)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")} | {
        "AWS_SHARED_CREDENTIALS_FILE": str(stack.credentials.credentials),
        "AWS_CONFIG_FILE": str(stack.credentials.config),
        "AWS_PROFILE": "search-ranker",
    }

    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == "Echo: hello"
