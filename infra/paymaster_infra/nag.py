"""cdk-nag: the AWS Solutions checks run on every synth; each exception is acknowledged in place.

An unacknowledged finding makes `app.synth()` raise, so a template that passes synth is clean.
"""

from collections.abc import Mapping

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

# Validation findings are namespaced by the plugin that reported them.
_PLUGIN = "AwsSolutions"


def add_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, reasons: Mapping[str, str]) -> None:
    """Acknowledge AWS Solutions findings on `scope` and below; values are the reasons.

    Keys are finding ids as cdk-nag 3 reports them, matched exactly: a finding about a policy or a
    wildcard names it, e.g. `AwsSolutions-IAM5[Resource::*]`.
    """
    Validations.of(scope).acknowledge(
        *(Acknowledgment(id=f"{_PLUGIN}::{finding}", reason=reason) for finding, reason in reasons.items())
    )
