"""The ledger: one immutable entry per reservation that reached its outcome and one per request a
rule refused, and the rollups each entry adds to once.

A request is one entry, or one per hop when it fell back to another model: the failed model's
hold is released (an entry, `released`, cost 0) and the fallback's is held and settled under
`<request id>~<hop>` (another entry, sharing the request id). The entries of a request sum to
what it was charged.

Periods are UTC. A call belongs to the month and day of its admission in UTC: budgets have
time zones, the ledger has one, so that every team's months line up for finance.
Example: admitted 2026-11-30T23:30-08:00 (a Los Angeles budget counts it in November)
= 2026-12-01T07:30Z → month `2026-12`, day `2026-12-01` in the ledger.

Each entry adds to six rollups — its team's month total, month × app, × model, × user (when
the caller named a user), day total and day × model — its call, its cost and the tokens the
provider reported (none when it reported no usage; the cost is then what the gateway charged).

A denial (`domain.events.denied_entry`: a request a rule refused with a 429, from its RequestDenied event) is
an entry too — cost 0, reserved 0, the rule's figures — but not a call: it adds one to `denials`
and nothing to `calls`, `cost` or tokens, in five rollups: month total, month × app, month ×
rule, day total, day × rule (the daily digest's "denials by rule").
Example: `search-monthly` refuses ranker twice on 3 Dec → SPEND#search#2026-12 TOTAL,
…#app ranker, …#rule search-monthly, SPEND#search#2026-12-03 TOTAL and …#rule search-monthly
each hold denials 2, and their calls and cost are what the admitted calls made them.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from paymaster.domain.chat import Usage

Dimension = Literal["app", "model", "user"]  # what a team's spend is broken down by
DenialDimension = Literal["rule"]  # what a team's denials are also counted by (they spend nothing)
DENIED = "denied"  # the outcome of a denial's entry


@dataclass(frozen=True, slots=True)
class Denial:
    """The rule that refused and its figures as admission saw them, in the rule's `unit`
    (micro-USD for cost_*, tokens, requests); `code` what the caller got with its 429."""

    rule: str
    code: str  # rate_limit_exceeded | insufficient_quota
    scope: str  # the rule's bucket, e.g. "team=search"
    unit: str
    limit: int
    used: int
    remaining: int
    requested: int
    window: str
    resets_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What one reservation recorded, from admission to its outcome. Money in micro-USD."""

    request_id: str
    hop: int  # 0, or the route index of the fallback this reservation held for
    admitted_at: datetime  # UTC, to the millisecond
    team: str
    app: str
    env: str
    principal: str  # the caller's IAM ARN
    model: str  # the virtual model held for (the cheaper one when downgraded)
    outcome: str  # settled | released | charged_delivered | charged_reservation | expired | denied
    reserved: int  # the most the request could have cost
    cost: int  # what it was charged
    user: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    downgraded_from: str | None = None
    billed_on: str | None = None  # provider_usage | delivered_text | reservation | released
    flags: tuple[str, ...] = ()
    usage: Usage | None = None  # the provider's, when it reported one
    # The tokens charged when they are not the provider's: the input estimate and the delivered
    # output (delivered_text), or the whole hold (reservation). Not added to the rollups.
    charged_usage: Usage | None = None
    deployment: str | None = None
    tried: tuple[str, ...] = ()
    provider_request_id: str | None = None
    latency_ms: int | None = None
    first_token_ms: int | None = None
    held_until: datetime | None = None  # the hold's expiry, to the second
    denial: Denial | None = None  # for a request a rule refused (outcome `denied`)

    @property
    def admitted(self) -> str:
        """`2026-12-03T10:15:42.123Z`: ISO 8601 in UTC to the millisecond, which sorts as it reads."""
        return self.admitted_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @property
    def month(self) -> str:
        return self.admitted_at.astimezone(UTC).strftime("%Y-%m")

    @property
    def day(self) -> str:
        return self.admitted_at.astimezone(UTC).strftime("%Y-%m-%d")

    @property
    def month_ends_at(self) -> datetime:
        """The first instant of the next UTC month: 2026-12-03T10:00Z → 2027-01-01T00:00Z."""
        admitted = self.admitted_at.astimezone(UTC)
        year, month = divmod(admitted.year * 12 + admitted.month, 12)
        return datetime(year, month + 1, 1, tzinfo=UTC)

    @property
    def decision(self) -> str:
        """`denied by rule <rule>`, `released`, `expired`, `downgraded from <model>` or `admitted`."""
        if self.denial is not None:
            return f"denied by rule {self.denial.rule}"
        if self.outcome in ("released", "expired"):
            return self.outcome
        return f"downgraded from {self.downgraded_from}" if self.downgraded_from else "admitted"


@dataclass(frozen=True, slots=True)
class Totals:
    """What a rollup adds up: calls (entries of admitted requests), micro-USD charged, tokens
    reported, and denials (entries of refused ones)."""

    calls: int = 0
    cost: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    denials: int = 0

    def __add__(self, other: "Totals") -> "Totals":
        """Field by field: (1 call, 30 µUSD) + (2, 12) = (3, 42); `sum(rows, Totals())` adds rows."""
        return Totals(*(mine + theirs for mine, theirs in zip(self._fields(), other._fields(), strict=True)))

    def __sub__(self, other: "Totals") -> "Totals":
        """Field by field: a month's (3 calls, 42 µUSD) − its users' (2, 12) = (1, 30) that named none."""
        return Totals(*(mine - theirs for mine, theirs in zip(self._fields(), other._fields(), strict=True)))

    def _fields(self) -> tuple[int, ...]:
        return (
            self.calls,
            self.cost,
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.denials,
        )


@dataclass(frozen=True, slots=True)
class Rollup:
    """One of a team's rollups: `period` a UTC month (`2026-12`) or day (`2026-12-03`);
    `dimension` None for the team's total, else the app, model or user named by `value`."""

    team: str
    period: str
    dimension: Dimension | DenialDimension | None = None
    value: str | None = None


def rollups(entry: LedgerEntry) -> tuple[Rollup, ...]:
    """The rollups `entry` adds to: month total, × app, × model, × user; day total, × model.
    A denial's: month total, × app, × rule; day total, × rule."""
    if entry.denial is not None:
        rule = entry.denial.rule
        return (
            Rollup(entry.team, entry.month),
            Rollup(entry.team, entry.month, "app", entry.app),
            Rollup(entry.team, entry.month, "rule", rule),
            Rollup(entry.team, entry.day),
            Rollup(entry.team, entry.day, "rule", rule),
        )
    month = [Rollup(entry.team, entry.month), Rollup(entry.team, entry.month, "app", entry.app)]
    month.append(Rollup(entry.team, entry.month, "model", entry.model))
    if entry.user is not None:
        month.append(Rollup(entry.team, entry.month, "user", entry.user))
    day = [Rollup(entry.team, entry.day), Rollup(entry.team, entry.day, "model", entry.model)]
    return (*month, *day)


def totals(entry: LedgerEntry) -> Totals:
    """What `entry` adds to each of its rollups: one call, its cost, the tokens reported; a
    denial one denial and nothing else."""
    if entry.denial is not None:
        return Totals(denials=1)
    usage = entry.usage or Usage(0, 0)
    return Totals(
        calls=1,
        cost=entry.cost,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )
