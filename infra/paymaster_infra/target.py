"""The Lambda platform the layers are built for.

Kept free of CDK imports so that `infra/build_layers.py` can read it without starting jsii; the
Lambda defaults use the matching runtime and architecture (a test pins that they agree).

The python3.13 runtime runs on Amazon Linux 2023 (glibc 2.34), so any wheel up to
manylinux_2_34 runs there; some dependencies (tiktoken 0.14) publish arm64 wheels only for
manylinux_2_28, so manylinux2014 alone is not enough.
"""

from typing import Final

PYTHON_VERSION: Final = "3.13"
# uv takes the newest glibc and accepts every older manylinux tag.
UV_PLATFORM: Final = "aarch64-manylinux_2_34"
