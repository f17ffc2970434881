"""The Lambda functions of `functions/`, run locally: each handler imported as Lambda imports it,
and the part of Lambda's context object that handlers and Powertools read."""

import importlib.util
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class LambdaContext:
    """The part of Lambda's context object that handlers and Powertools read."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:local"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def load_handler(function: str, module: str = "app", attribute: str = "handler") -> Handler:
    """`functions/<function>/<module>.py`'s handler, imported as Lambda would import it."""
    path = FUNCTIONS / function / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"paymaster_function_{function}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no handler module at {path}")
    loaded: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    handler: Handler = getattr(loaded, attribute)
    return handler


def invoker(function: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`functions/<function>`'s handler as a call of one event, each with its own request id."""
    handler = load_handler(function)

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        return handler(event, LambdaContext(function, str(uuid.uuid4())))

    return invoke
