"""The smoke lives in infra/ (it synthesises the app): put it on the path, as tests/infra does."""

import sys
from pathlib import Path

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra"
if str(INFRA_DIR) not in sys.path:
    sys.path.insert(0, str(INFRA_DIR))
