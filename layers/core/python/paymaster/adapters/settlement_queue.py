"""Settlements the counter store could not take now, on an SQS queue until they land.

The gateway puts one message per settlement (a release included) when the store refused or did
not answer; the settlement-retry function (`functions/settlement_retry`) applies each with the
same idempotent `CounterStore.settle`, so a message delivered twice, or a settlement that did
land although the store timed out, counts once. A message the function cannot apply goes back to
the queue, and after `maxReceiveCount` deliveries to its dead-letter queue, where an operator
sees it (an alarm on its depth) — it is never dropped.

If SQS cannot take the message either (both services failing at once), it is kept in memory
and sent again with the next `put` or `flush`; the line logged then carries the whole
settlement, so that it can be replayed by hand if the execution environment is recycled first.

    {"request_id": "r1", "outcome": "released", "cost": 0, "usage": null, "flags": ["…"], "fence": true,
     "changes": [{"pk": "RULE#…", "sk": "2026-11", "delta": -42, "spent": 0}]}
"""

import json
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from paymaster.domain.chat import Usage
from paymaster.ports import CallRecord, CounterChange, Settlement

logger = Logger(service="paymaster")


def settlement_to_json(settlement: Settlement) -> str:
    return json.dumps(asdict(settlement), separators=(",", ":"))


def settlement_from_json(body: str) -> Settlement:
    """The settlement a message holds; ValueError/KeyError/TypeError if it holds none. A message
    queued by a gateway from before the ledger (no `billed_on`, no `call`) or before the charged
    tokens were kept (no `charged`) still settles."""
    raw = json.loads(body)
    usage, charged = raw["usage"], raw.get("charged")
    call = raw.get("call")
    return Settlement(
        request_id=str(raw["request_id"]),
        changes=tuple(
            CounterChange(str(change["pk"]), str(change["sk"]), int(change["delta"]), int(change["spent"]))
            for change in raw["changes"]
        ),
        outcome=raw["outcome"],
        cost=int(raw["cost"]),
        usage=_usage(usage),
        flags=tuple(str(flag) for flag in raw["flags"]),
        fence=bool(raw["fence"]),
        billed_on=raw.get("billed_on"),
        call=None
        if call is None
        else CallRecord(
            deployment=call["deployment"],
            tried=tuple(str(label) for label in call["tried"]),
            provider_request_id=call["provider_request_id"],
            latency_ms=int(call["latency_ms"]),
            first_token_ms=None if call["first_token_ms"] is None else int(call["first_token_ms"]),
        ),
        charged=_usage(charged),
    )


def _usage(raw: dict[str, Any] | None) -> Usage | None:
    return None if raw is None else Usage(**{key: int(value) for key, value in raw.items()})


class SqsSettlementQueue:
    """`client` builds the SQS client on first use: the gateway needs it only when the store fails."""

    def __init__(self, client: Callable[[], Any], queue_url: str) -> None:
        self._client_factory = client
        self._client: Any = None
        self._queue_url = queue_url
        self._pending: list[Settlement] = []
        self._lock = threading.Lock()

    def put(self, settlement: Settlement) -> None:
        with self._lock:
            self._pending.append(settlement)
        self.flush()

    def flush(self) -> None:
        """Sends whatever is still waiting; what SQS refuses waits for the next call."""
        with self._lock:
            waiting, self._pending = self._pending, []
        unsent = [settlement for settlement in waiting if not self._send(settlement)]
        if unsent:
            with self._lock:
                self._pending = unsent + self._pending

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _send(self, settlement: Settlement) -> bool:
        body = settlement_to_json(settlement)
        try:
            if self._client is None:
                self._client = self._client_factory()
            self._client.send_message(QueueUrl=self._queue_url, MessageBody=body)
        except (BotoCoreError, ClientError) as error:
            logger.error(
                "settlement kept in memory: the settlement queue cannot take it now",
                extra={"request_id": settlement.request_id, "error": type(error).__name__, "settlement": body},
            )
            return False
        return True
