"""What happens before a call leaves the gateway — building its body, fetching its key — is never
the provider's to bill: whatever fails there is a provider failure that was not accepted, so the
route moves on and the hold is released. Only an error paymaster raises on purpose (a request the
adapter cannot translate, a key that is unavailable) keeps its own meaning."""

from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger

from paymaster.domain.errors import PaymasterError, ProviderError
from paymaster.domain.policy import Deployment

logger = Logger(service="paymaster")


@contextmanager
def before_sending(deployment: Deployment) -> Iterator[None]:
    try:
        yield
    except PaymasterError:
        raise
    except Exception as error:  # a failure of this deployment, never a request let through
        logger.exception("could not prepare the provider call", extra={"deployment": deployment.label})
        raise ProviderError(
            f"The gateway could not prepare the call to `{deployment.label}` ({type(error).__name__})."
        ) from None
