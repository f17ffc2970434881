"""Chat completions: admit, walk the route, call the provider, settle — on every exit path.

Two steps so that every refusal happens before an HTTP response starts: `plan` raises for
anything the caller must be told with a status code (unknown model, a rule that refuses, the
counter store down for a closed rule); `complete` / `stream` then walk the route (`routing`) and
settle whatever happens (see `domain.metering` for what each outcome is charged). A stream moves
to the next deployment only before its first event, so a caller never sees two answers spliced.
"""

import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger

from paymaster.domain.audit import Output, streamed_output
from paymaster.domain.chat import (
    ChatRequest,
    Completion,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageReported,
)
from paymaster.domain.errors import InvalidRequestError, PaymasterError, ProviderError, ProviderTimeoutError
from paymaster.domain.identity import Caller
from paymaster.domain.metering import Bill, Delivered, NotAccepted, Outcome, Reported, Unknown
from paymaster.domain.policy import Policy
from paymaster.domain.routing import Hop
from paymaster.ports import ChatProvider, ProviderCall
from paymaster.services.routing import BudgetView, Exchange, Router

logger = Logger(service="paymaster")


class ChatService:
    """`monotonic` times the calls (a stream's total timeout)."""

    def __init__(
        self,
        policy: Policy,
        providers: Mapping[str, ChatProvider],
        router: Router,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._providers = providers
        self._router = router
        self._monotonic = monotonic

    def plan(
        self, caller: Caller, request: ChatRequest, request_id: str, metadata: Mapping[str, str] | None = None
    ) -> Exchange:
        return self._router.plan(caller, request, request_id, metadata)

    def complete(self, exchange: Exchange) -> Completion:
        def attempt(hop: Hop) -> Completion:
            completion = self._provider(hop).complete(_call(exchange, hop))
            exchange.provider_request_id = completion.provider_request_id
            exchange.output = Output(completion.text, completion.tool_calls)
            return completion

        return self._router.serve(exchange, attempt, lambda answer: answer.usage)

    def stream(self, exchange: Exchange) -> Generator[StreamEvent | Bill, None, None]:
        """The provider's events, then the `Bill` once settled. Usage is not passed on: the bill
        carries what was charged. Closing the generator early (client gone) closes the provider
        stream and charges what was delivered. An error raised from here carries its bill; one
        nobody planned for becomes a GatewayFailureError."""
        started = self._monotonic()
        seen = _Seen()
        # Until the walk ends, whether the provider billed is unknown (the whole hold); None once
        # it streams, when what it delivered and reported decides.
        before: Outcome | None = Unknown()
        events: Generator[StreamEvent, None, None] | None = None

        def close() -> Bill:
            """Closes the provider stream and settles once, whatever happened; the bill."""
            if events is not None:
                events.close()
            if exchange.bill is None:
                if before is None and seen.usage is None:
                    logger.warning("stream cut", extra={"request_id": exchange.request_id})
                if before is None:
                    exchange.output = seen.output()
                self._router.settle(exchange, seen.outcome() if before is None else before)
            assert exchange.bill is not None
            return exchange.bill

        try:
            try:
                events = self._router.walk(exchange, lambda hop: _opened(self._provider(hop), _call(exchange, hop)))
            except ProviderError as error:
                before = Delivered("") if error.accepted else NotAccepted()
                raise
            except InvalidRequestError:
                before = NotAccepted()  # an adapter refused to translate the request: nothing was sent
                raise
            before = None
            deadline = started + self._policy.providers[exchange.deployment.provider].timeouts.total_s
            yield from seen.relay(
                events, lambda: self._monotonic() > deadline, lambda: self._router.first_output(exchange)
            )
            if seen.usage is None:
                logger.warning("stream ended without usage", extra={"request_id": exchange.request_id})
            exchange.output = seen.output()
            bill = self._router.settle(exchange, seen.outcome())
            self._router.log_served(exchange, self._monotonic() - started)
            yield bill
        except PaymasterError as error:
            if before is None and isinstance(error, ProviderError):
                self._router.provider_failed(exchange, error)  # mid-stream: the walk counted the others
            error.bill = close()
            raise
        except Exception as error:
            close()
            raise self._router.unforeseen(exchange, error) from error
        finally:
            close()
            # Settled: the metrics go out before the stream's last bytes (the [DONE] line).
            self._router.measure(exchange)

    def answer(
        self, caller: Caller, request: ChatRequest, request_id: str, metadata: Mapping[str, str] | None = None
    ) -> tuple[Exchange, Completion, BudgetView]:
        """A non-streamed request start to end: admit, call, settle, and the budgets' view."""
        exchange = self.plan(caller, request, request_id, metadata)
        completion = self.complete(exchange)
        return exchange, completion, self._router.budgets(exchange)

    def open_stream(
        self, caller: Caller, request: ChatRequest, request_id: str, metadata: Mapping[str, str] | None = None
    ) -> tuple[Exchange, StreamEvent | Bill | None, Generator[StreamEvent | Bill, None, None], BudgetView]:
        """Admits and pulls the first event, so a provider that fails at once is a status code
        and the headers can name the deployment that serves."""
        exchange = self.plan(caller, request, request_id, metadata)
        events = self.stream(exchange)
        first = next(events, None)
        try:
            return exchange, first, events, self._router.budgets(exchange)
        except BaseException:
            events.close()  # settles now rather than whenever the generator is collected
            raise

    def models(self, caller: Caller) -> list[str]:
        return self._policy.models_for(caller.team)

    def _provider(self, hop: Hop) -> ChatProvider:
        return self._providers[hop.deployment.provider]


@dataclass(slots=True)
class _Seen:
    """What a stream the provider accepted has sent so far: its output, and its usage once reported."""

    delivered: list[TextDelta | ToolCallDelta] = field(default_factory=list)
    usage: Usage | None = None

    def relay(
        self,
        events: Iterator[StreamEvent],
        past_deadline: Callable[[], bool],
        first_output: Callable[[], None],
    ) -> Generator[StreamEvent, None, None]:
        """Passes the events on, keeping the usage back and noting the output; `first_output`
        is called as its first piece comes."""
        for event in events:
            if isinstance(event, UsageReported):
                self.usage = event.usage
                continue
            if isinstance(event, TextDelta | ToolCallDelta):
                self.delivered.append(event)
                if len(self.delivered) == 1:
                    first_output()
            yield event
            if past_deadline():
                raise ProviderTimeoutError("the provider's stream ran past its total timeout", accepted=True)

    def outcome(self) -> Outcome:
        """What the stream is charged: its usage, else what it delivered (its text, and each
        tool call's name and arguments)."""
        delivered = "".join(
            piece.text if isinstance(piece, TextDelta) else (piece.name or "") + piece.arguments
            for piece in self.delivered
        )
        return Reported(self.usage, delivered) if self.usage is not None else Delivered(delivered)

    def output(self) -> Output:
        """What the stream delivered, as an opted-in team's prompt record keeps it."""
        return streamed_output(self.delivered)


def _call(exchange: Exchange, hop: Hop) -> ProviderCall:
    assert isinstance(exchange.request, ChatRequest)
    return ProviderCall(exchange.request, hop.deployment, exchange.admission.max_output_tokens)


def _opened(provider: ChatProvider, call: ProviderCall) -> Generator[StreamEvent, None, None]:
    """Opens the provider's stream and waits for its first event, so that a provider that refuses
    the call fails here, where the route may still move on."""
    events = provider.stream(call)
    try:
        first = next(events)
    except StopIteration:
        first = None
    except BaseException:
        events.close()
        raise
    return _prepend(first, events)


def _prepend(first: StreamEvent | None, rest: Generator[StreamEvent, None, None]) -> Generator[StreamEvent, None, None]:
    try:
        if first is not None:
            yield first
            yield from rest
    finally:
        rest.close()
