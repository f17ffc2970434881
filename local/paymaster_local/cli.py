"""`paymaster local`: run the whole stack in the foreground until Ctrl-C; `paymaster local tick`:
run one schedule's handler now against the stack running under the state directory."""

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from paymaster.adapters.policy_file import PolicyFileError, load_policy
from paymaster.domain.errors import MonthNotOverError
from paymaster.domain.policy import Policy
from paymaster.domain.schedules import JOBS, next_fire, schedules
from paymaster_local.functions import invoker
from paymaster_local.mail import MailWatcher
from paymaster_local.real_endpoints import SYNTAX, RealEndpointChoice, RealEndpointError, parse_choice
from paymaster_local.resources import LEDGER_TABLE
from paymaster_local.stack import DEFAULT_PORT, DEFAULT_STATE_DIR, LocalStack, NoRunningStackError, local_stack
from paymaster_local.tick import TickError, find_schedule, parse_at, tick
from paymaster_local.timers import ScheduleClock

DEMO_POLICY = Path(__file__).resolve().parents[2] / "policy" / "demo.yaml"


def ledger_handler() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The ledger function's handler, run in this process (`paymaster ledger replay` without
    `--function`): its environment is this one, the local stack's."""
    return invoker("ledger")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", type=Path, default=DEMO_POLICY, help="policy file (default: the demo policy)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PAYMASTER_PORT", DEFAULT_PORT)),
        help=f"gateway port (default: $PAYMASTER_PORT or {DEFAULT_PORT})",
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="credentials and logs")
    parser.add_argument(
        "--real-endpoint",
        dest="real_endpoints",
        action="append",
        default=[],
        type=_real_endpoint,
        metavar=SYNTAX,
        help="send provider NAME to the base_url of the policy (a local vLLM or Ollama, OpenAI, Anthropic) "
        "instead of the fakes, its API key read from an environment variable or a file into the local "
        "Secrets Manager; repeatable",
    )
    parser.add_argument(
        "--clock-speed",
        type=_clock_speed,
        default=1.0,
        metavar="N",
        help="run the report schedules' clock (forecast, digests, month closes) N times faster than the real one "
        "from the start, e.g. 1440: a day a minute (the sweeper and the counters' windows keep the real clock)",
    )
    commands = parser.add_subparsers(dest="local_command", metavar="{tick}")
    tick_parser = commands.add_parser(
        "tick",
        help="run one schedule's handler now (or as of --at) against the running local stack; print its answer",
    )
    tick_parser.add_argument("schedule", choices=JOBS)
    tick_parser.add_argument("--team", help="the team whose digest or month close to run")
    tick_parser.add_argument(
        "--at", type=_at, help="the schedule's scheduled_time, with its offset (default: the schedules' clock now)"
    )
    tick_parser.add_argument(
        "--state-dir", type=Path, default=argparse.SUPPRESS, help="the running stack's (default: .paymaster/local)"
    )


def _real_endpoint(text: str) -> RealEndpointChoice:
    try:
        return parse_choice(text)
    except RealEndpointError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _clock_speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if not speed > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a clock speed is a positive number, e.g. 60 or 1440")
    return speed


def _at(text: str) -> datetime:
    try:
        return parse_at(text)
    except TickError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    if getattr(args, "local_command", None) == "tick":
        try:
            return tick(args.state_dir, args.schedule, args.team, args.at, sys.stdout)
        except (NoRunningStackError, TickError, MonthNotOverError) as error:
            print(f"paymaster local tick: {error}", file=sys.stderr)
            return 2
    try:
        load_policy(args.policy)
    except PolicyFileError as error:
        print(f"paymaster local: {error}", file=sys.stderr)
        return 2
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    try:
        with local_stack(
            args.policy,
            port=args.port,
            state_dir=args.state_dir,
            real_endpoints=args.real_endpoints,
            clock_speed=args.clock_speed,
        ) as stack:
            print(banner(stack), flush=True)
            mail = threading.Thread(target=MailWatcher(stack.mail_dir, sys.stdout).run, args=(stopped,), daemon=True)
            mail.start()
            stopped.wait()
            print("\nstopping the local stack…", file=sys.stderr, flush=True)
    except RealEndpointError as error:
        print(f"paymaster local: {error}", file=sys.stderr)
        return 2
    return 0


def profile_team(policy: Policy, profile: str) -> str:
    """The team of `profile`, a principal's name."""
    principal = next(principal for principal in policy.principals() if principal.name == profile)
    return policy.caller(principal.arn).team


def snippet_model(policy: Policy, profile: str) -> str:
    """A model the team of `profile` (a principal's name) may call: its first chat model, else its first."""
    allowed = policy.models_for(profile_team(policy, profile))
    return next((name for name in allowed if policy.models[name].kind == "chat"), allowed[0])


def providers_line(stack: LocalStack) -> str:
    """Where each provider goes: the fakes, or (`--real-endpoint`) the policy's own endpoint."""
    if not stack.real_endpoints:
        return "  every provider is served by the fakes (--real-endpoint NAME: by the policy's base_url)"
    real = "".join(f"\n    {endpoint.describe()}" for endpoint in stack.real_endpoints)
    return f"  real endpoints (every other provider is served by the fakes):{real}"


def schedules_lines(stack: LocalStack, policy: Policy, team: str) -> str:
    """The schedules' clock, and how to run one schedule now (README "Scheduled jobs")."""
    clock = stack.clock or ScheduleClock(datetime.now(UTC))
    speed = "the real clock" if clock.speed == 1 else f"{clock.speed:g}× the real clock from {clock.start:%H:%M:%S}Z"
    close = find_schedule(schedules(policy), "month-close", team)
    closes_at = next_fire(close, clock.at(datetime.now(UTC)), start=clock.start).astimezone(ZoneInfo(close.time_zone))
    state = "" if stack.state_dir == DEFAULT_STATE_DIR else f" --state-dir {stack.state_dir}"
    return f"""The schedules run on their timers: the sweeper every minute; the forecast, each team's digest
and month close on {speed} (--clock-speed N). Run one now, or as of a time, and read the report:

  .venv/bin/paymaster local tick digest --team {team}{state}
  .venv/bin/paymaster local tick month-close --team {team} --at {closes_at.isoformat()}{state}
  AWS_ENDPOINT_URL={stack.aws_url} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \\
    .venv/bin/paymaster report --table {LEDGER_TABLE} --team {team} --month {(closes_at - timedelta(days=1)):%Y-%m}"""


def banner(stack: LocalStack) -> str:
    profile = next(iter(stack.credentials.access_keys))
    key_id, secret = stack.credentials.access_keys[profile]
    policy = load_policy(stack.policy_file)
    model = snippet_model(policy, profile)
    team = profile_team(policy, profile)
    return f"""
paymaster is running at {stack.url}  (policy: {stack.policy_file})
  AWS stand-in (moto): {stack.aws_url}    fake providers: {stack.providers_url}
{providers_line(stack)}
  credentials, one profile per principal: {stack.credentials.credentials.resolve()}
  profiles: {", ".join(stack.credentials.access_keys)}

Call it as an app would (in another shell, from the repo):

  export AWS_SHARED_CREDENTIALS_FILE={stack.credentials.credentials.resolve()}
  export AWS_CONFIG_FILE={stack.credentials.config.resolve()}
  export AWS_PROFILE={profile}
  .venv/bin/python - <<'PY'
  import httpx
  from openai import OpenAI
  from paymaster.client import SigV4Auth

  client = OpenAI(base_url="{stack.url}/v1", api_key="unused", http_client=httpx.Client(auth=SigV4Auth()))
  stream = client.chat.completions.create(
      model="{model}", messages=[{{"role": "user", "content": "Say hello to the platform team"}}], stream=True
  )
  for chunk in stream:
      print(chunk.choices[0].delta.content or "" if chunk.choices else "", end="", flush=True)
  print()
  PY

or with curl's own SigV4 signing:

  curl -s {stack.url}/v1/chat/completions --aws-sigv4 "aws:amz:us-east-1:execute-api" \\
    --user "{key_id}:{secret}" -H 'content-type: application/json' \\
    -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "hi"}}]}}'

An unsigned request is refused:  curl -s -X POST {stack.url}/v1/chat/completions   → 403

What each call cost, from the ledger (the runner adds each settled call within a second):

  AWS_ENDPOINT_URL={stack.aws_url} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \\
    .venv/bin/paymaster ledger --table {LEDGER_TABLE} --team {team} [--month YYYY-MM] [--csv FILE]

Each event on the bus as it arrives (CostRecorded per charged call, RequestDenied per refusal):

  AWS_ENDPOINT_URL={stack.aws_url} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \\
    .venv/bin/paymaster events tail --queue-url {stack.events_queue_url}

{schedules_lines(stack, policy, team)}

Ctrl-C stops everything.
"""
