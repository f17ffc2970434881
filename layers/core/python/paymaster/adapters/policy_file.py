"""Reading the policy file: YAML in, a validated Policy out, or every error with its place."""

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
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise PolicyFileError(path, [str(error)]) from None
    try:
        return Policy.model_validate(raw)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in problem['loc']) or '(top)'}: {problem['msg']}"
            for problem in error.errors()
        ]
        raise PolicyFileError(path, problems) from None
