"""The gateway's layers: core package, third-party dependencies, tokenizer files, policy file."""

import shutil
from pathlib import Path

from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from paymaster_infra.config import AppConfig
from paymaster_infra.lambda_defaults import default_layer
from paymaster_infra.web_adapter import web_adapter_layer

# Where the layers' contents appear in the function (each layer is unpacked into /opt).
TIKTOKEN_DIR = "/opt/tiktoken"
POLICY_FILE = "/opt/policy/policy.yaml"

_POLICY_LAYER_PATH = Path(POLICY_FILE).relative_to("/opt")


class GatewayLayers(Construct):
    """Everything the gateway function mounts besides its own `run.sh`; the other functions mount
    part of it.

    Code and data change at different rates, so each is its own layer: a policy edit publishes a
    small policy layer and leaves the 60 MB dependencies layer alone.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig) -> None:
        super().__init__(scope, construct_id)
        self.core = default_layer(self, "Core", description="paymaster core package", asset_dir=str(config.core_dir))
        self.deps = default_layer(
            self,
            "Deps",
            description="paymaster third-party dependencies",
            asset_dir=str(config.deps_dir),
        )
        self.tokenizers = default_layer(
            self,
            "Tokenizers",
            description="tiktoken BPE files",
            asset_dir=str(config.tokenizers_dir),
        )
        self.policy = default_layer(
            self,
            "Policy",
            description="paymaster policy file",
            asset_dir=str(_stage_policy(config.policy_file, config.staging_dir / "policy-layer")),
        )
        self.web_adapter = web_adapter_layer(self)

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        return [self.web_adapter, *self.python, self.tokenizers, self.policy]

    @property
    def python(self) -> list[lambda_.ILayerVersion]:
        """The core package and its dependencies: what any paymaster handler imports."""
        return [self.core, self.deps]


def _stage_policy(policy_file: Path, layer_dir: Path) -> Path:
    """Lay the policy file out as the layer wants it: `<layer_dir>/policy/policy.yaml`.

    A plain copy at synth time, so no bundling (and no Docker) is needed; the asset hash follows
    the file's content.
    """
    shutil.rmtree(layer_dir, ignore_errors=True)
    target = layer_dir / _POLICY_LAYER_PATH
    target.parent.mkdir(parents=True)
    shutil.copyfile(policy_file, target)
    return layer_dir
