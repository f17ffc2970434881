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

An opted-in team's prompt audit record travels with its settlement (`"audit": {...}`, absent for
any other team), so a settlement applied from the queue writes it as the gateway would have. Its
prompt and completion are base64 of their UTF-8 in the message: 4/3 of at most `MAX_AUDIT_BYTES`
(128 KiB) is 171 KiB whatever the text — JSON's own escaping could double a text of quotes — so
the message stays under SQS's 256 KiB with the rest of the settlement (a few KB).
"""

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from paymaster.adapters.dynamodb_records import epoch_ms, from_epoch_ms
from paymaster.domain.audit import PromptRecord
from paymaster.domain.chat import Usage
from paymaster.ports import CallRecord, CounterChange, Settlement

logger = Logger(service="paymaster")


def settlement_to_json(settlement: Settlement) -> str:
    raw = asdict(replace(settlement, audit=None))
    del raw["audit"]
    if settlement.audit is not None:  # only an opted-in team's settlement carries one
        raw["audit"] = _audit_to_json(settlement.audit)
    return json.dumps(raw, separators=(",", ":"))


def settlement_from_json(body: str) -> Settlement:
    """The settlement a message holds; ValueError/KeyError/TypeError if it holds none. A message
    queued by a gateway from before the ledger (no `billed_on`, no `call`) or before the charged
    tokens were kept (no `charged`) still settles."""
    raw = json.loads(body)
    usage, charged = raw["usage"], raw.get("charged")
    call = raw.get("call")
    audit = raw.get("audit")
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
        audit=None if audit is None else _audit_from_json(audit),
        charged=_usage(charged),
    )


def _audit_to_json(record: PromptRecord) -> dict[str, Any]:
    raw = asdict(record)
    raw["admitted_at"] = epoch_ms(record.admitted_at)
    raw["expires_at"] = epoch_ms(record.expires_at)
    raw["prompt"] = _base64(record.prompt)
    raw["completion"] = None if record.completion is None else _base64(record.completion)
    return raw


def _audit_from_json(raw: dict[str, Any]) -> PromptRecord:
    return PromptRecord(
        request_id=str(raw["request_id"]),
        hop=int(raw["hop"]),
        admitted_at=from_epoch_ms(int(raw["admitted_at"])),
        team=str(raw["team"]),
        app=str(raw["app"]),
        env=str(raw["env"]),
        principal=str(raw["principal"]),
        user=None if raw["user"] is None else str(raw["user"]),
        model=str(raw["model"]),
        deployment=str(raw["deployment"]),
        prompt=_text(raw["prompt"]),
        completion=None if raw["completion"] is None else _text(raw["completion"]),
        prompt_bytes=int(raw["prompt_bytes"]),
        completion_bytes=int(raw["completion_bytes"]),
        truncated=bool(raw["truncated"]),
        expires_at=from_epoch_ms(int(raw["expires_at"])),
    )


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _text(encoded: str) -> str:
    return base64.b64decode(encoded, validate=True).decode()


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
            # The settlement is logged whole, to be replayed from the log if the process dies with
            # it; an opted-in team's words are not: the logs are not the prompts table's readers.
            audit = settlement.audit
            logger.error(
                "settlement kept in memory: the settlement queue cannot take it now",
                extra={
                    "request_id": settlement.request_id,
                    "error": type(error).__name__,
                    "settlement": body if audit is None else settlement_to_json(replace(settlement, audit=None)),
                    "audit_record_bytes": None if audit is None else audit.prompt_bytes + audit.completion_bytes,
                },
            )
            return False
        return True
