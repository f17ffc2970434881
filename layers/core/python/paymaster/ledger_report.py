"""`paymaster ledger`: a team's calls for a UTC month, from the ledger table, with their total —
and every field of every call as CSV, for finance. Requests a rule refused are listed among
them with their decision and the rule's figures, and counted apart (they cost nothing):

    2026-12-03T10:15:42.123Z  6f1c2e0a-…  ranker  u-7  gpt-4o-mini  openai/gpt-4o-mini  settled  21 in  4 out  $0.000006
    2026-12-03T10:16:01.004Z  e41f7a3c-…  ranker  u-7  gpt-4o  -  denied by rule search-monthly  …  $0
    …
    search, 2026-12 (UTC): 3 calls, $0.000021 (the month's rollup: 3 calls, $0.000021); 1 denied (the month's rollup: 1)

The total is the sum of the entries listed; the rollup is what the ledger functions added up as
they wrote them. They agree once the stream consumer and the denials queue have caught up
(seconds). The "denied" part is left out for a month without denials.
"""

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from paymaster.adapters.dynamodb_ledger import DynamoDBLedger
from paymaster.domain.ledger import Denial, LedgerEntry, Rollup
from paymaster.domain.money import format_usd

CSV_COLUMNS = (
    "admitted_at", "request_id", "hop", "team", "app", "env", "user", "principal", "model", "decision",
    "outcome", "billed_on", "deployment", "tried", "provider_request_id", "reserved_usd", "cost_usd",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "latency_ms", "first_token_ms",
    "flags", "metadata", "denial_code", "rule_scope", "rule_unit", "rule_limit", "rule_used", "rule_remaining",
    "rule_requested", "rule_window", "rule_resets_at",
)  # fmt: skip
# A denial's rule_* amounts are in the rule's unit, as RequestDenied carries them: micro-USD for
# cost_* rules, tokens or requests for the others.


def month_report(ledger: DynamoDBLedger, team: str, month: str, out: TextIO, csv_file: Path | None = None) -> int:
    """Prints each call of `team` admitted in `month` and the total; writes them to `csv_file`."""
    entries = list(ledger.calls(team, month))
    for entry in entries:
        print(entry_line(entry), file=out)
    calls = [entry for entry in entries if entry.denial is None]
    denied = len(entries) - len(calls)
    rollup = ledger.rollup(Rollup(team, month))
    denials = f"; {denied} denied (the month's rollup: {rollup.denials})" if denied or rollup.denials else ""
    print(
        f"{team}, {month} (UTC): {len(calls)} calls, ${format_usd(sum(entry.cost for entry in calls))} "
        f"(the month's rollup: {rollup.calls} calls, ${format_usd(rollup.cost)}){denials}",
        file=out,
    )
    if csv_file is not None:
        with csv_file.open("w", newline="") as file:
            write_csv(entries, file)
        print(f"{len(entries)} entries written to {csv_file}", file=out)
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
    if entry.denial is not None:
        tokens = denial_text(entry.denial)
    what = entry.decision if entry.decision != "admitted" else entry.outcome
    return (
        f"{entry.admitted}  {entry.request_id}{hop}  {entry.app}  {entry.user or '-'}  {entry.model}  "
        f"{entry.deployment or '-'}  {what}  {tokens}  ${format_usd(entry.cost)}"
    )


def denial_text(denial: Denial) -> str:
    """`insufficient_quota: needs $0.00345, $0.0018 left of $2000 cost_per_month (team=search, 2026-11)`;
    a rate limit's amounts are tokens or requests: `needs 1, 0 left of 600 requests_per_minute`."""

    def amount(value: int) -> str:
        return f"${format_usd(value)}" if denial.unit.startswith("cost_") else str(value)

    return (
        f"{denial.code}: needs {amount(denial.requested)}, {amount(denial.remaining)} left of "
        f"{amount(denial.limit)} {denial.unit} ({denial.scope}, {denial.window})"
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
                *_denial_columns(entry.denial),
            ]
        )


def _denial_columns(denial: Denial | None) -> list[str | int]:
    if denial is None:
        return [""] * 9
    resets_at = denial.resets_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [
        denial.code, denial.scope, denial.unit, denial.limit, denial.used, denial.remaining, denial.requested,
        denial.window, resets_at,
    ]  # fmt: skip
