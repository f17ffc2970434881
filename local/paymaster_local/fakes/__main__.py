"""``python -m paymaster_local.fakes --port 8081 [--host 127.0.0.1] [--chunk-delay-s 0.02]``.

With ``PAYMASTER_FAKE_API_KEY`` set (`API_KEY_ENV`), the OpenAI and Anthropic fakes accept only
that key — an environment variable rather than an option, so that it is not in the process list.
"""

import argparse
import os
from collections.abc import Sequence

import uvicorn

from paymaster_local.fakes import API_KEY_ENV, create_fake_providers_app
from paymaster_local.fakes.script import DEFAULT_CHUNK_DELAY_S


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the fake OpenAI, Anthropic and Bedrock providers (and their fault control API) until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m paymaster_local.fakes",
        description=f"Fake OpenAI, Anthropic and Bedrock providers. Set {API_KEY_ENV} to accept only that API key.",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--chunk-delay-s", type=float, default=DEFAULT_CHUNK_DELAY_S)
    args = parser.parse_args(argv)
    app = create_fake_providers_app(args.chunk_delay_s, api_key=os.environ.get(API_KEY_ENV) or None)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
