"""Embeddings: admitted, routed and metered like chat, in one blocking step.

An embeddings call has no output to shrink or stream: the hold is the input's upper bound at the
model's input price, and the bill is the provider's input count — or, when a provider answered
without one, the whole hold, flagged (never $0).
"""

from collections.abc import Mapping

from paymaster.domain.chat import Usage
from paymaster.domain.embeddings import EmbeddingRequest, Embeddings
from paymaster.domain.identity import Caller
from paymaster.domain.routing import Hop
from paymaster.ports import EmbeddingCall, EmbeddingProvider
from paymaster.services.routing import BudgetView, Exchange, Router


class EmbeddingsService:
    def __init__(self, providers: Mapping[str, EmbeddingProvider], router: Router) -> None:
        self._providers = providers
        self._router = router

    def embed(
        self, caller: Caller, request: EmbeddingRequest, request_id: str, metadata: Mapping[str, str] | None = None
    ) -> tuple[Exchange, Embeddings, BudgetView]:
        exchange = self._router.plan(caller, request, request_id, metadata)

        def attempt(hop: Hop) -> Embeddings:
            return self._providers[hop.deployment.provider].embed(EmbeddingCall(request, hop.deployment))

        def usage(answer: Embeddings) -> Usage | None:
            return None if answer.input_tokens is None else Usage(answer.input_tokens, 0)

        embeddings = self._router.serve(exchange, attempt, usage)
        return exchange, embeddings, self._router.budgets(exchange)
