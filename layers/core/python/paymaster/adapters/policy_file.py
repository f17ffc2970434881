"""Reading the policy file: YAML in, a validated Policy out, or every error with its place.

policy.yaml:42 rules.2.limit: a tokens_per_minute limit is a whole number
"""

from pathlib import Path

import yaml
from pydantic import ValidationError

from paymaster.domain.policy import Policy


class PolicyFileError(Exception):
    """The file cannot be read, is not YAML, or does not describe a valid policy."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(problems))
        self.path = path
        self.problems = problems


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text()
    except OSError as error:
        raise PolicyFileError(path, [f"cannot read the file: {error.strerror or error}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PolicyFileError(path, [str(error)]) from None
    try:
        return Policy.model_validate(raw)
    except ValidationError as error:
        tree = yaml.compose(text)
        problems = []
        for problem in error.errors():
            loc = [part for part in problem["loc"] if not str(part).startswith("function-")]
            where = ".".join(str(part) for part in loc) or "(top)"
            problems.append(f"{path.name}:{_line(tree, loc)} {where}: {problem['msg']}")
        raise PolicyFileError(path, problems) from None


def _line(node: yaml.Node | None, loc: list[str | int]) -> int:
    """The 1-based line of the deepest node the error's path reaches in the file."""
    if node is None:
        return 1
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if key.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line
