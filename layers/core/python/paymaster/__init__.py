"""paymaster, a serverless LLM gateway with per-team rate limits and spend caps."""

import sys

# httpx imports its command-line client (click, pygments, rich: 0.2–0.4 s of a cold start) when
# those are installed, as in a development environment; nothing here runs it. None in
# sys.modules makes that import fail at once, and httpx falls back to a stub `httpx.main`.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
