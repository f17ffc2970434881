"""Embeddings: admitted, routed and metered like chat, in one blocking step.

An embeddings call has no output to shrink or stream: the hold is the input's upper bound at the
model's input price, and the bill is the provider's input count — or, when a provider answered
without one, the whole hold, flagged (never $0).
"""

import time
from collections.abc import Callable, Mapping

from paymaster.domain.chat import Usage
from paymaster.domain.embeddings import EmbeddingRequest, Embeddings
from paymaster.domain.errors import InvalidRequestError, ProviderError
from paymaster.domain.identity import Caller
from paymaster.domain.metering import NotAccepted, Reported, Unknown
from paymaster.domain.routing import Hop
from paymaster.ports import EmbeddingCall, EmbeddingProvider
from paymaster.services.routing import BudgetView, Exchange, Router


class EmbeddingsService:
    def __init__(
        self,
        providers: Mapping[str, EmbeddingProvider],
        router: Router,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers = providers
        self._router = router
        self._monotonic = monotonic

    def embed(
        self, caller: Caller, request: EmbeddingRequest, request_id: str, metadata: Mapping[str, str] | None = None
    ) -> tuple[Exchange, Embeddings, BudgetView]:
        exchange = self._router.plan(caller, request, request_id, metadata)
        started = self._monotonic()

        def attempt(hop: Hop) -> Embeddings:
            return self._providers[hop.deployment.provider].embed(EmbeddingCall(request, hop.deployment))

        try:
            embeddings = self._router.walk(exchange, attempt)
        except ProviderError as error:
            self._router.settle(exchange, Unknown() if error.accepted else NotAccepted())
            raise
        except InvalidRequestError:
            # An adapter refused to translate the request (e.g. a tool call's arguments are not
            # JSON, a `dimensions` the model lacks): nothing was sent.
            self._router.settle(exchange, NotAccepted())
            raise
        except BaseException:
            self._router.settle(exchange, Unknown())
            raise
        if embeddings.input_tokens is None:
            self._router.settle(exchange, Unknown())
        else:
            self._router.settle(exchange, Reported(Usage(embeddings.input_tokens, 0)))
        self._router.log_served(exchange, self._monotonic() - started)
        return exchange, embeddings, self._router.budgets(exchange)
