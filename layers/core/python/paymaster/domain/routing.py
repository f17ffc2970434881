"""Which deployments serve a virtual model, in which order, and when to move on to the next.

A request's route is every deployment of its model — lowest `priority` first, each priority in a
weighted random order — then the same for each model in `fallbacks`. The gateway walks the route
until a deployment answers; it moves on only for a failure the model lists in `fallback_on` and
only while the provider has not accepted the call (a provider that accepted may bill it).

Example: deployments a (weight 3), b (weight 1), c (priority 1), fallbacks [m2] with deployment d:
the route is [a, b, c, d] three times in four and [b, a, c, d] otherwise.
"""

from collections.abc import Callable
from dataclasses import dataclass

from paymaster.domain.errors import ProviderError, ProviderRejectedError, ProviderThrottledError, ProviderTimeoutError
from paymaster.domain.policy import Deployment, FallbackReason, Model, Policy


@dataclass(frozen=True, slots=True)
class Hop:
    """One deployment to try, and the virtual model (name and terms) it serves for."""

    model_name: str
    model: Model
    deployment: Deployment


def deployment_order(model: Model, draw: Callable[[], float]) -> list[Deployment]:
    """The model's deployments in the order to try them. `draw` returns a float in [0, 1).

    Within one priority each next deployment is drawn among those left, in proportion to its
    weight; a deployment with weight 0 is never drawn.
    """
    order: list[Deployment] = []
    for priority in sorted({deployment.priority for deployment in model.deployments}):
        left = [deployment for deployment in model.deployments if deployment.priority == priority and deployment.weight]
        while left:
            point = draw() * sum(deployment.weight for deployment in left)
            for index, deployment in enumerate(left):
                point -= deployment.weight
                if point < 0 or index == len(left) - 1:
                    order.append(left.pop(index))
                    break
    return order


def route(policy: Policy, model_name: str, draw: Callable[[], float]) -> list[Hop]:
    """Every deployment of `model_name`, then of each of its fallbacks (not theirs), in order."""
    model = policy.models[model_name]
    hops = [Hop(model_name, model, deployment) for deployment in deployment_order(model, draw)]
    for fallback in model.fallbacks:
        fallback_model = policy.models[fallback]
        hops += [Hop(fallback, fallback_model, deployment) for deployment in deployment_order(fallback_model, draw)]
    return hops


def failure_reason(error: ProviderError) -> FallbackReason | None:
    """What kind of failure `error` is for `fallback_on`, or None when no other deployment may
    be tried: the caller's request was wrong, or the provider had accepted the call."""
    if error.accepted or isinstance(error, ProviderRejectedError):
        return None
    if isinstance(error, ProviderTimeoutError):
        return "timeout"
    if isinstance(error, ProviderThrottledError) or error.status == 429:
        return "throttled"
    return "unavailable"


def may_fall_back(error: ProviderError, model: Model) -> bool:
    reason = failure_reason(error)
    return reason is not None and reason in model.fallback_on
