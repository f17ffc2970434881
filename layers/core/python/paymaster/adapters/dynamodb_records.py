"""What a reservation records for the ledger, in DynamoDB's JSON — one encoding, both ways —
and the prompt audit record the settlement puts beside it (`prompt_item`).

The counter store writes these attributes on the reservation item at admission (`asked_attributes`)
and settlement (`call_attributes`, `usage_attribute`); the ledger reads them back from the
counters' stream (`recorded_entry`) and writes them again, with the same names, as the ledger
entry (`entry_attributes`), which it reads back the same way. Names: `paymaster.schema`.
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from paymaster import schema
from paymaster.domain.audit import PromptRecord
from paymaster.domain.chat import Usage
from paymaster.domain.ledger import Denial, LedgerEntry
from paymaster.ports import Asked, CallRecord

Item = Mapping[str, Any]


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def s(value: str) -> dict[str, str]:
    return {"S": value}


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def asked_attributes(asked: Asked) -> dict[str, Any]:
    """Who asked for what; what the caller controls is capped (`schema.MAX_LABEL_CHARS`, …)."""
    item: dict[str, Any] = {
        schema.ADMITTED_AT: n(epoch_ms(asked.admitted_at)),
        schema.PRINCIPAL: s(asked.principal_arn),
        schema.ENV: s(asked.env),
        schema.RESERVED: n(asked.reserved),
    }
    if asked.user is not None:
        item[schema.USER] = _label(asked.user)
    if asked.metadata:
        kept = asked.metadata[: schema.MAX_METADATA_KEYS]
        item[schema.METADATA] = {"M": {key[: schema.MAX_LABEL_CHARS]: _label(value) for key, value in kept}}
    if asked.downgraded_from is not None:
        item[schema.DOWNGRADED_FROM] = s(asked.downgraded_from)
    return item


def call_attributes(call: CallRecord) -> dict[str, Any]:
    """How the call was served (present once a provider was called, or a call was attempted)."""
    item: dict[str, Any] = {
        schema.TRIED: {"L": [s(label) for label in call.tried]},
        schema.LATENCY_MS: n(call.latency_ms),
    }
    if call.deployment is not None:
        item[schema.DEPLOYMENT] = s(call.deployment)
    if call.provider_request_id is not None:
        item[schema.PROVIDER_REQUEST_ID] = _label(call.provider_request_id)
    if call.first_token_ms is not None:
        item[schema.FIRST_TOKEN_MS] = n(call.first_token_ms)
    return item


def usage_attribute(usage: Usage) -> dict[str, Any]:
    return {
        "M": {
            schema.USAGE_INPUT: n(usage.input_tokens),
            schema.USAGE_OUTPUT: n(usage.output_tokens),
            schema.USAGE_CACHE_READ: n(usage.cache_read_tokens),
            schema.USAGE_CACHE_WRITE: n(usage.cache_write_tokens),
        }
    }


def prompt_item(record: PromptRecord) -> dict[str, Any]:
    """The prompts table's item for `record`, keyed by request id and hop, with its TTL."""
    item: dict[str, Any] = {
        schema.PARTITION_KEY: s(schema.prompt_pk(record.request_id)),
        schema.SORT_KEY: s(schema.prompt_sk(record.hop)),
        schema.REQUEST_ID: s(record.request_id),
        schema.HOP: n(record.hop),
        schema.ADMITTED_AT: n(epoch_ms(record.admitted_at)),
        schema.TEAM: s(record.team),
        schema.APP: s(record.app),
        schema.ENV: s(record.env),
        schema.PRINCIPAL: s(record.principal),
        schema.MODEL: s(record.model),
        schema.DEPLOYMENT: s(record.deployment),
        schema.PROMPT: s(record.prompt),
        schema.PROMPT_BYTES: n(record.prompt_bytes),
        schema.COMPLETION_BYTES: n(record.completion_bytes),
        schema.TRUNCATED: {"BOOL": record.truncated},
        schema.TTL_ATTRIBUTE: n(int(record.expires_at.timestamp())),
    }
    if record.user is not None:
        item[schema.USER] = _label(record.user)
    if record.completion is not None:
        item[schema.COMPLETION] = s(record.completion)
    return item


def entry_attributes(entry: LedgerEntry) -> dict[str, Any]:
    """The entry as the reservation recorded it (keys and the ledger's own names aside)."""
    item: dict[str, Any] = {
        schema.TEAM: s(entry.team),
        schema.APP: s(entry.app),
        schema.MODEL: s(entry.model),
        schema.COST: n(entry.cost),
        schema.FLAGS: {"L": [s(flag) for flag in entry.flags]},
        **asked_attributes(
            Asked(
                entry.admitted_at,
                entry.principal,
                entry.env,
                entry.user,
                entry.metadata,
                entry.reserved,
                entry.downgraded_from,
            )
        ),
    }
    if entry.usage is not None:
        item[schema.USAGE] = usage_attribute(entry.usage)
    if entry.charged_usage is not None:
        item[schema.CHARGED_USAGE] = usage_attribute(entry.charged_usage)
    if entry.held_until is not None:
        item[schema.HELD_UNTIL] = n(int(entry.held_until.timestamp()))
    if entry.billed_on is not None:
        item[schema.BILLED_ON] = s(entry.billed_on)
    if entry.latency_ms is not None:
        call = CallRecord(
            entry.deployment, entry.tried, entry.provider_request_id, entry.latency_ms, entry.first_token_ms
        )
        item |= call_attributes(call)
    if entry.denial is not None:
        item[schema.DENIAL] = denial_attribute(entry.denial)
    return item


def denial_attribute(denial: Denial) -> dict[str, Any]:
    return {
        "M": {
            schema.DENIAL_RULE: s(denial.rule),
            schema.DENIAL_CODE: s(denial.code),
            schema.DENIAL_SCOPE: _label(denial.scope),
            schema.DENIAL_UNIT: s(denial.unit),
            schema.DENIAL_LIMIT: n(denial.limit),
            schema.DENIAL_USED: n(denial.used),
            schema.DENIAL_REMAINING: n(denial.remaining),
            schema.DENIAL_REQUESTED: n(denial.requested),
            schema.DENIAL_WINDOW: s(denial.window),
            schema.DENIAL_RESETS_AT: n(epoch_ms(denial.resets_at)),
        }
    }


def recorded_entry(item: Item, *, request_id: str, hop: int, outcome: str) -> LedgerEntry:
    """The entry a reservation item (or a ledger entry) records. KeyError, ValueError or
    TypeError when it is not one: a reservation without `admitted_at` (written before the
    ledger existed) is not."""
    held_until = _number(item, schema.HELD_UNTIL)
    return LedgerEntry(
        request_id=request_id,
        hop=hop,
        admitted_at=from_epoch_ms(int(item[schema.ADMITTED_AT]["N"])),
        team=item[schema.TEAM]["S"],
        app=item[schema.APP]["S"],
        env=item[schema.ENV]["S"],
        principal=item[schema.PRINCIPAL]["S"],
        model=item[schema.MODEL]["S"],
        outcome=outcome,
        reserved=int(item[schema.RESERVED]["N"]),
        cost=int(item[schema.COST]["N"]),
        user=_text(item, schema.USER),
        metadata=tuple(sorted((key, value["S"]) for key, value in item.get(schema.METADATA, {"M": {}})["M"].items())),
        downgraded_from=_text(item, schema.DOWNGRADED_FROM),
        billed_on=_text(item, schema.BILLED_ON),
        flags=tuple(flag["S"] for flag in item.get(schema.FLAGS, {"L": []})["L"]),
        usage=_usage(item, schema.USAGE),
        charged_usage=_usage(item, schema.CHARGED_USAGE),
        deployment=_text(item, schema.DEPLOYMENT),
        tried=tuple(label["S"] for label in item.get(schema.TRIED, {"L": []})["L"]),
        provider_request_id=_text(item, schema.PROVIDER_REQUEST_ID),
        latency_ms=_number(item, schema.LATENCY_MS),
        first_token_ms=_number(item, schema.FIRST_TOKEN_MS),
        held_until=None if held_until is None else datetime.fromtimestamp(held_until, UTC),
        denial=_denial(item[schema.DENIAL]["M"]) if schema.DENIAL in item else None,
    )


def _usage(item: Item, name: str) -> Usage | None:
    value = item.get(name)
    if value is None:
        return None
    tokens = value["M"]
    return Usage(
        input_tokens=int(tokens[schema.USAGE_INPUT]["N"]),
        output_tokens=int(tokens[schema.USAGE_OUTPUT]["N"]),
        cache_read_tokens=int(tokens[schema.USAGE_CACHE_READ]["N"]),
        cache_write_tokens=int(tokens[schema.USAGE_CACHE_WRITE]["N"]),
    )


def _denial(denial: Item) -> Denial:
    return Denial(
        rule=denial[schema.DENIAL_RULE]["S"],
        code=denial[schema.DENIAL_CODE]["S"],
        scope=denial[schema.DENIAL_SCOPE]["S"],
        unit=denial[schema.DENIAL_UNIT]["S"],
        limit=int(denial[schema.DENIAL_LIMIT]["N"]),
        used=int(denial[schema.DENIAL_USED]["N"]),
        remaining=int(denial[schema.DENIAL_REMAINING]["N"]),
        requested=int(denial[schema.DENIAL_REQUESTED]["N"]),
        window=denial[schema.DENIAL_WINDOW]["S"],
        resets_at=from_epoch_ms(int(denial[schema.DENIAL_RESETS_AT]["N"])),
    )


def _label(value: str) -> dict[str, str]:
    return s(value[: schema.MAX_LABEL_CHARS])


def _text(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value["S"])


def _number(item: Item, name: str) -> int | None:
    value = item.get(name)
    return None if value is None else int(value["N"])


def from_epoch_ms(milliseconds: int) -> datetime:
    """Exact to the millisecond (a float division would not be)."""
    seconds, remainder = divmod(milliseconds, 1000)
    return datetime.fromtimestamp(seconds, UTC) + timedelta(milliseconds=remainder)
