"""paymaster's DynamoDB tables and items, defined once.

The counter store writes these items, the ledger's stream consumer reads them back from the
counters table's stream, the local stack creates the tables from `create_table_request` and the
CDK app (`infra/paymaster_infra/tables.py`) from the same definitions. A name or key prefix
spelled anywhere else is a bug.

Counters table (`pk` / `sk`, stream NEW_AND_OLD_IMAGES, TTL `expires_at`):

    RULE#<rule>#<bucket> / <window id>   a counter: committed (reserved + settled), spent (settled)
    RES#<request id>     / RESERVATION   a reservation: what it holds, who asked, its outcome

Ledger table (`pk` / `sk`, TTL `expires_at`; index `by-request`: `request_id` / `sk`), written
by the ledger function from the counters' stream (docs/LEDGER.md):

    CALLS#<team>#<YYYY-MM>              / <admitted at>#<reservation id>   an entry (a denial's too)
    SPEND#<team>#<YYYY-MM | YYYY-MM-DD> / TOTAL                            a team's rollup
    SPEND#<team>#<period>#<dimension>   / <app | model | user | rule>      … by app, model, user, rule
    ALERT#<rule>#<bucket>#<window>      / AT#<pct>@<amount>                a threshold crossed (docs/ALARMS.md)
    ALERT#<rule>#<bucket>#<window>      / SENT#<pct>@<amount>              … and its email, sending or sent

and by the scheduled jobs (docs/SCHEDULES.md):

    REPORT#<team>                       / <YYYY-MM>                        a month's close, team's zone
    NOTICE#<team>#<kind>#<rule>#<bucket> / <YYYY-MM-DD>                    a notice sent that day (TTL)

Prompts table (`pk` / `sk`, TTL `expires_at`), written by the settlement's own transaction for
teams whose policy opts in (`audit: {prompts: true}`; docs/LEDGER.md, "Prompt audit record"):

    PROMPT#<request id>                 / HOP#<hop>                        a prompt audit record
"""

from dataclasses import dataclass
from typing import Any, Final, Literal

AttributeType = Literal["S", "N"]

PARTITION_KEY: Final = "pk"
SORT_KEY: Final = "sk"
TTL_ATTRIBUTE: Final = "expires_at"


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    type: AttributeType


@dataclass(frozen=True, slots=True)
class Index:
    """A global secondary index projecting every attribute."""

    name: str
    partition_key: Attribute
    sort_key: Attribute


@dataclass(frozen=True, slots=True)
class Table:
    """One table: `pk`/`sk` strings, on demand; `construct_id` names it in the CDK app."""

    construct_id: str
    stream: bool = False  # NEW_AND_OLD_IMAGES
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str = TTL_ATTRIBUTE
    partition_key: Attribute = Attribute(PARTITION_KEY, "S")
    sort_key: Attribute = Attribute(SORT_KEY, "S")

    def create_table_request(self, table_name: str) -> dict[str, Any]:
        """The CreateTable request for this table (TTL takes its own call: `ttl_request`)."""
        attributes = {self.partition_key, self.sort_key}
        for index in self.indexes:
            attributes |= {index.partition_key, index.sort_key}
        request: dict[str, Any] = {
            "TableName": table_name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": attribute.name, "AttributeType": attribute.type}
                for attribute in sorted(attributes, key=lambda attribute: attribute.name)
            ],
            "KeySchema": _key_schema(self.partition_key, self.sort_key),
        }
        if self.indexes:
            request["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index.name,
                    "KeySchema": _key_schema(index.partition_key, index.sort_key),
                    "Projection": {"ProjectionType": "ALL"},
                }
                for index in self.indexes
            ]
        if self.stream:
            request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        return request

    def ttl_request(self, table_name: str) -> dict[str, Any]:
        return {
            "TableName": table_name,
            "TimeToLiveSpecification": {"Enabled": True, "AttributeName": self.ttl_attribute},
        }


def _key_schema(partition_key: Attribute, sort_key: Attribute) -> list[dict[str, str]]:
    return [
        {"AttributeName": partition_key.name, "KeyType": "HASH"},
        {"AttributeName": sort_key.name, "KeyType": "RANGE"},
    ]


# --- the counters table ------------------------------------------------------------------------

# A counter is keyed by its window: a new window is a new item, so nothing ever resets a live one.
COMMITTED: Final = "committed"  # reserved + settled, in the rule's unit; what admission checks
SPENT: Final = "spent"  # settled only
RULE: Final = "rule"
WINDOW_END: Final = "window_end"

# A reservation. Written whole at admission; its outcome and what the call used at settlement.
RESERVATION_SORT_KEY: Final = "RESERVATION"
STATE: Final = "state"  # "held", then the settlement's outcome
HELD: Final = "held"
HOLDS: Final = "holds"  # [{pk, sk, amount, rule}]: what was added to each counter
HOLD_PK: Final = "pk"
HOLD_SK: Final = "sk"
HOLD_AMOUNT: Final = "amount"
HOLD_RULE: Final = "rule"
HELD_INDEX: Final = "held-by-expiry"  # sparse GSI: reservations still held, by expiry
HELD_SHARD: Final = "held_shard"  # GSI partition key, removed when a reservation is settled
HELD_UNTIL: Final = "held_until"  # GSI sort key, epoch seconds
HELD_SHARDS: Final = 16  # spreads held reservations over GSI partitions
TEAM: Final = "team"
APP: Final = "app"
MODEL: Final = "model"
COST: Final = "cost"  # micro-USD charged
FLAGS: Final = "flags"
USAGE: Final = "usage"  # the provider's, when it reported one:
USAGE_INPUT: Final = "input_tokens"
USAGE_OUTPUT: Final = "output_tokens"
USAGE_CACHE_READ: Final = "cache_read_tokens"
USAGE_CACHE_WRITE: Final = "cache_write_tokens"
# The tokens charged when they are not the provider's (delivered_text, reservation), as USAGE is.
CHARGED_USAGE: Final = "charged_usage"
# Who asked, written at admission, for the ledger (the counters need none of it).
ADMITTED_AT: Final = "admitted_at"  # epoch milliseconds
PRINCIPAL: Final = "principal"  # the caller's IAM ARN
ENV: Final = "env"
USER: Final = "user"
METADATA: Final = "meta"  # {key: value}, the caller's x-paymaster-meta-* labels
RESERVED: Final = "reserved"  # micro-USD: the most the request could cost
DOWNGRADED_FROM: Final = "downgraded_from"
# How it was served, written at settlement, for the ledger.
BILLED_ON: Final = "billed_on"  # provider_usage | delivered_text | reservation | released
DEPLOYMENT: Final = "deployment"
TRIED: Final = "tried"
PROVIDER_REQUEST_ID: Final = "provider_request_id"
LATENCY_MS: Final = "latency_ms"
FIRST_TOKEN_MS: Final = "first_token_ms"  # noqa: S105 - an attribute name, not a secret
# What the caller controls is capped, so that a reservation stays near one write unit (1 KB):
# labels longer than this are cut, metadata past this many keys (sorted) is left out of the
# record. Measured (bench/requests_per_admission.py): 357 B held / 604 B settled with 1 rule,
# 725 / 973 B with 6, for an assumed-role ARN, a user and two labels; four labels at the cap
# add ~0.5 KB, and an item past 1 KB costs twice per write.
MAX_LABEL_CHARS: Final = 64
MAX_METADATA_KEYS: Final = 4
FENCED: Final = "fenced"  # the flag of a released reservation put where none was (an unknown admission)

COUNTERS: Final = Table(
    "Counters",
    stream=True,
    indexes=(Index(HELD_INDEX, Attribute(HELD_SHARD, "S"), Attribute(HELD_UNTIL, "N")),),
)


COUNTER_PREFIX: Final = "RULE#"


def counter_pk(rule: str, bucket: str) -> str:
    """`RULE#search-monthly#team=search`: one partition per rule and bucket."""
    return f"{COUNTER_PREFIX}{rule}#{bucket}"


def split_counter_pk(pk: str) -> tuple[str, str]:
    """`RULE#search-monthly#team=search` → (`search-monthly`, `team=search`): a rule's name has no
    `#` (the policy's names), a bucket may."""
    if not pk.startswith(COUNTER_PREFIX):
        raise ValueError(f"{pk!r} is not a counter's key")
    rule, separator, bucket = pk.removeprefix(COUNTER_PREFIX).partition("#")
    if not separator:
        raise ValueError(f"{pk!r} is not a counter's key")
    return rule, bucket


def reservation_pk(request_id: str) -> str:
    return f"RES#{request_id}"


def request_id_of(reservation_pk_value: str) -> str:
    return reservation_pk_value.removeprefix("RES#")


def held_shard(shard: int) -> str:
    return f"HELD#{shard}"


# --- the ledger table ----------------------------------------------------------------------------

# An entry: one reservation that reached its outcome, copied from its item with the counters
# table's names above (team, app, model, cost, usage, …) and never updated. A team's entries of
# one UTC month share a partition, sorted by admission: a month's calls are one Query.
REQUEST_ID: Final = "request_id"  # without the hop: the by-request index's partition key
HOP: Final = "hop"  # 0, or the route index of the fallback held as `<request id>~<hop>`
HOP_SEPARATOR: Final = "~"
OUTCOME: Final = "outcome"  # the reservation's final state
REQUEST_INDEX: Final = "by-request"  # request id → its entries (one per hop), by admission
# A rollup: what a team's entries of one period add up to, each added once, by ADD.
# Every rollup's partition key starts with this, and no entry's does: the gateway may read the
# ledger's items under it only (an IAM `dynamodb:LeadingKeys` condition, infra/gateway_function.py).
ROLLUP_PREFIX: Final = "SPEND#"
ROLLUP_TOTAL: Final = "TOTAL"  # the sort key of a team's total for the period
CALLS: Final = "calls"  # entries added; and COST plus the four USAGE_* token names, summed
DENIALS: Final = "denials"  # denials' entries added (never in CALLS)
# A denial's entry: the request a rule refused (outcome `denied`), with the rule's figures in
# one map, named as the RequestDenied event names them (`paymaster.domain.events.RefusingRule`).
DENIAL: Final = "denial"
DENIAL_RULE: Final = "rule"
DENIAL_CODE: Final = "code"
DENIAL_SCOPE: Final = "scope"
DENIAL_UNIT: Final = "unit"
DENIAL_LIMIT: Final = "limit"
DENIAL_USED: Final = "used"
DENIAL_REMAINING: Final = "remaining"
DENIAL_REQUESTED: Final = "requested"
DENIAL_WINDOW: Final = "window"
DENIAL_RESETS_AT: Final = "resets_at"  # epoch milliseconds

LEDGER: Final = Table(
    "Ledger",
    indexes=(Index(REQUEST_INDEX, Attribute(REQUEST_ID, "S"), Attribute(SORT_KEY, "S")),),
)


def calls_pk(team: str, month: str) -> str:
    """`CALLS#search#2026-12`: every entry of a team for a UTC month."""
    return f"CALLS#{team}#{month}"


def entry_sk(admitted_at: str, reservation_id: str) -> str:
    """`2026-12-03T10:15:42.123Z#<request id>[~<hop>]`: in order of admission, unique per hold."""
    return f"{admitted_at}#{reservation_id}"


def rollup_pk(team: str, period: str, dimension: str | None) -> str:
    """`SPEND#search#2026-12` (sort key `TOTAL`), `SPEND#search#2026-12#model` (sort key the
    model): one partition per team, period and dimension, so that each takes one write per call."""
    return f"{ROLLUP_PREFIX}{team}#{period}" + ("" if dimension is None else f"#{dimension}")


def hop_id(request_id: str, hop: int) -> str:
    """The reservation id of a fallback held at route hop `hop`: (`r1`, 2) → `r1~2`."""
    return f"{request_id}{HOP_SEPARATOR}{hop}"


def split_hop(reservation_id: str) -> tuple[str, int]:
    """`r1~2` → (`r1`, 2); `r1` → (`r1`, 0): a fallback's reservation id names its request."""
    request_id, _, hop = reservation_id.partition(HOP_SEPARATOR)
    return request_id, int(hop or 0)


# A month close's report: the MonthClosed event's detail, whole, as JSON; put once (a second run
# finds it), `published` set once its event is on the bus.
REPORT: Final = "report"
PUBLISHED: Final = "published"
# A notice marker: put (conditionally) before a once-a-day notice is sent, so that a second run that
# day finds it and sends nothing; expires a few days later.
NOTICE_KIND_FORECAST: Final = "forecast"
NOTICE_KIND_DIGEST: Final = "digest"


def report_pk(team: str) -> str:
    """`REPORT#search` (sort key `2026-11`): a team's month closes, one Query."""
    return f"REPORT#{team}"


def notice_pk(team: str, kind: str, rule: str, bucket: str) -> str:
    """`NOTICE#search#forecast#search-monthly#team=search` (sort key the day it was sent)."""
    return f"NOTICE#{team}#{kind}#{rule}#{bucket}"


# A budget alarm's markers, one partition per rule, bucket and window, never read by the gateway:
# - the crossing (`AT#<pct>@<amount>`: the threshold's percentage and amount in the rule's units,
#   so that a cap changed mid-window has thresholds of its own), put once by the ledger function
#   with the stream record that took the threshold (`CROSSED_BY`, the record's eventID): that
#   record publishes the BudgetThresholdCrossed, on every delivery of it; any other record
#   finding it does nothing;
# - its email (`SENT#<pct>@<amount>`), claimed by the budget-alarm function while it sends (`NOTICE`
#   `sending`, until `LEASE_UNTIL`) and then `sent`: a second delivery finds it and sends nothing.
ALERT_PREFIX: Final = "ALERT#"
CROSSED_BY: Final = "record"
NOTICE: Final = "notice"
SENDING: Final = "sending"
SENT: Final = "sent"
LEASE_UNTIL: Final = "lease_until"  # epoch seconds
CLAIM: Final = "claim"  # a claim's own token (alarm emails, notice markers): a repeated PutItem finds its own


def alert_pk(rule: str, bucket: str, window: str) -> str:
    """`ALERT#search-monthly#team=search#2026-12`."""
    return f"{ALERT_PREFIX}{rule}#{bucket}#{window}"


def crossed_sk(at: int, amount: int) -> str:
    """`AT#80@1600000000`: 80 % of a $2,000 limit."""
    return f"AT#{at}@{amount}"


def sent_sk(at: int, amount: int) -> str:
    """`SENT#80@1600000000`."""
    return f"SENT#{at}@{amount}"


# --- the prompts table ---------------------------------------------------------------------------

# A prompt audit record: an opted-in team's prompt and completion for one reservation, with the
# counters' and ledger's names above for who asked (request_id, hop, admitted_at, team, app, env,
# principal, user, model, deployment). Put by the settlement, never read by the gateway.
PROMPT: Final = "prompt"  # JSON text: the messages and tools, or an embedding's input
COMPLETION: Final = "completion"  # JSON text: the assistant message delivered (absent: none)
PROMPT_BYTES: Final = "prompt_bytes"  # UTF-8 bytes of the whole prompt, before the cut
COMPLETION_BYTES: Final = "completion_bytes"
TRUNCATED: Final = "truncated"  # BOOL: either was cut to the team's max_bytes

PROMPTS: Final = Table("Prompts")


def prompt_pk(request_id: str) -> str:
    """`PROMPT#<request id>`: a request's records, one per hop, are one Query."""
    return f"PROMPT#{request_id}"


def prompt_sk(hop: int) -> str:
    return f"HOP#{hop}"
