"""What Lambda's Python runtime does with an event handler, for `make smoke` (infra/smoke.py).

Run by a bare interpreter (no packages of its own) in isolated mode, so that the handler sees only
what the artifact ships: the function's code (`LAMBDA_TASK_ROOT`) and its layers under `OPT`, on
`sys.path` in the runtime's order. Imports `_HANDLER` (`module.attribute`), invokes it once with
the event and a context (TIMEOUT_S: the function's timeout), and writes its JSON result to
RESULT. Standard library only.

    python -I infra/lambda_runtime.py OPT EVENT RESULT TIMEOUT_S
"""

import importlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any


class Context:
    """The context object's attributes that handlers and Powertools read."""

    def __init__(self, environ: dict[str, str], timeout_s: int) -> None:
        self.function_name = environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        region = environ["AWS_REGION"]
        self.invoked_function_arn = f"arn:aws:lambda:{region}:000000000000:function:{self.function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "smoke"
        self._timeout_s = timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return self._timeout_s * 1000


def python_path(task_root: Path, opt: Path) -> list[str]:
    """Where the runtime looks for modules before the standard library: the function's code, then
    the layers' `python/lib/pythonX.Y/site-packages` and `python`."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return [str(task_root), str(opt / "python" / "lib" / version / "site-packages"), str(opt / "python")]


def main() -> None:
    opt, event_file, result_file = (Path(argument) for argument in sys.argv[1:4])
    timeout_s = int(sys.argv[4])
    environ = dict(os.environ)
    task_root = Path(environ["LAMBDA_TASK_ROOT"])
    sys.path[:0] = python_path(task_root, opt)
    os.chdir(task_root)
    module_name, _, attribute = environ["_HANDLER"].rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    event: Any = json.loads(event_file.read_text())
    result = handler(event, Context(environ, timeout_s))
    result_file.write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
