"""`paymaster ledger`: a team's calls for a UTC month, from the ledger table, with their total —
and every field of every call as CSV, for finance.

    2026-12-03T10:15:42.123Z  6f1c2e0a-…  ranker  u-7  gpt-4o-mini  openai/gpt-4o-mini  settled  21 in  4 out  $0.000006
    …
    search, 2026-12 (UTC): 3 calls, $0.000021 (the month's rollup: 3 calls, $0.000021)

The total is the sum of the entries listed; the rollup is what the ledger function added up as
it wrote them. They agree once the stream consumer has caught up (seconds).
"""

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.domain.ledger import LedgerEntry, Rollup
from paymaster.domain.money import format_usd

CSV_COLUMNS = (
    "admitted_at", "request_id", "hop", "team", "app", "env", "user", "principal", "model", "decision",
    "outcome", "billed_on", "deployment", "tried", "provider_request_id", "reserved_usd", "cost_usd",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "latency_ms", "first_token_ms",
    "flags", "metadata",
)  # fmt: skip


def month_report(ledger: DynamoDBLedger, team: str, month: str, out: TextIO, csv_file: Path | None = None) -> int:
    """Prints each call of `team` admitted in `month` and the total; writes them to `csv_file`."""
    entries = list(ledger.calls(team, month))
    for entry in entries:
        print(entry_line(entry), file=out)
    rollup = ledger.rollup(Rollup(team, month))
    print(
        f"{team}, {month} (UTC): {len(entries)} calls, ${format_usd(sum(entry.cost for entry in entries))} "
        f"(the month's rollup: {rollup.calls} calls, ${format_usd(rollup.cost)})",
        file=out,
    )
    if csv_file is not None:
        with csv_file.open("w", newline="") as file:
            write_csv(entries, file)
        print(f"{len(entries)} calls written to {csv_file}", file=out)
    return 0


def request_report(ledger: DynamoDBLedger, request_id: str, out: TextIO) -> int:
    """Prints a request's entries (one per hop when it fell back); 1 if the ledger has none."""
    entries = ledger.request(request_id)
    for entry in entries:
        print(entry_line(entry), file=out)
    if not entries:
        print(f"request {request_id} is not in the ledger", file=out)
    return 0 if entries else 1


def entry_line(entry: LedgerEntry) -> str:
    hop = f"~{entry.hop}" if entry.hop else ""
    tokens = f"{entry.usage.input_tokens} in  {entry.usage.output_tokens} out" if entry.usage else "no usage"
    what = entry.decision if entry.decision != "admitted" else entry.outcome
    return (
        f"{entry.admitted}  {entry.request_id}{hop}  {entry.app}  {entry.user or '-'}  {entry.model}  "
        f"{entry.deployment or '-'}  {what}  {tokens}  ${format_usd(entry.cost)}"
    )


def write_csv(entries: Iterable[LedgerEntry], file: TextIO) -> None:
    writer = csv.writer(file)
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        usage = entry.usage
        writer.writerow(
            [
                entry.admitted,
                entry.request_id,
                entry.hop,
                entry.team,
                entry.app,
                entry.env,
                entry.user or "",
                entry.principal,
                entry.model,
                entry.decision,
                entry.outcome,
                entry.billed_on or "",
                entry.deployment or "",
                " ".join(entry.tried),
                entry.provider_request_id or "",
                format_usd(entry.reserved),
                format_usd(entry.cost),
                usage.input_tokens if usage else "",
                usage.output_tokens if usage else "",
                usage.cache_read_tokens if usage else "",
                usage.cache_write_tokens if usage else "",
                "" if entry.latency_ms is None else entry.latency_ms,
                "" if entry.first_token_ms is None else entry.first_token_ms,
                " ".join(entry.flags),
                " ".join(f"{key}={value}" for key, value in entry.metadata),
            ]
        )
