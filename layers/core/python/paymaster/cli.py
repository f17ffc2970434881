"""The `paymaster` command.

paymaster local [--policy FILE] [--port N] [--real-endpoint NAME[=env:VAR|file:PATH]]...
                                            run the local stack (needs the dev install)
paymaster policy validate FILE              check a policy file; every error with its place
paymaster events tail [--queue-url URL] [--count N] [--seconds S]
                                            print paymaster's events, one line each, as they
                                            arrive on an SQS queue a bus rule delivers them to
paymaster secrets set PROVIDER [--policy FILE] [--region R]
                                            store a provider's API key (read from stdin) in the
                                            secret the policy names for it, creating it if missing
paymaster secrets check [--policy FILE] [--region R]
                                            every secret the policy names: set, missing or empty
                                            (exit 1 unless all are set; `make deploy ENV=…` runs it)
paymaster ledger --team T [--month YYYY-MM] [--csv FILE] | --request ID  [--table NAME]
                                            a team's calls for a UTC month with their total, or
                                            one request's; every field as CSV (ledger_report)
paymaster ledger replay [--queue-url URL] [--function NAME] [--dry-run] [--table NAME]
                                            hand each stream range the ledger failure queue holds
                                            to the ledger function again (ledger_replay); delete
                                            the message once nothing in it fails
paymaster report --team T --month YYYY-MM [--table NAME]
                                            a team's closed month (its time zone) as a table:
                                            totals by app, model, user, denials, budgets
"""

import argparse
import importlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from paymaster import names
from paymaster.adapters.policy_file import PolicyFileError, load_policy
from paymaster.domain.money import format_usd
from paymaster.domain.policy import Policy
from paymaster.domain.spend import is_month


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="paymaster", description="paymaster, the exact LLM gateway")
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="run the local stack in the foreground")
    local_cli = _local_cli()
    if local_cli is not None:
        local_cli.add_arguments(local)

    policy = commands.add_parser("policy", help="policy file tools")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    validate = policy_commands.add_parser("validate", help="validate a policy file")
    validate.add_argument("file", type=Path)

    events = commands.add_parser("events", help="paymaster's published events")
    events_commands = events.add_subparsers(dest="events_command", required=True)
    tail = events_commands.add_parser(
        "tail",
        help="print events as they arrive on an SQS queue that a rule on paymaster's bus delivers to; "
        "each message is deleted once printed",
    )
    tail.add_argument(
        "--queue-url",
        default=os.environ.get(names.ENV_EVENTS_QUEUE_URL),
        help=f"the queue (default: ${names.ENV_EVENTS_QUEUE_URL})",
    )
    tail.add_argument("--count", type=int, help="stop after this many events (default: never)")
    tail.add_argument("--seconds", type=float, help="stop after this long (default: never)")

    _add_ledger(commands)

    report = commands.add_parser("report", help="a team's closed month, from the month close's report")
    report.add_argument("--team", required=True)
    report.add_argument("--month", type=_month, required=True, help="YYYY-MM, in the team's time zone")
    report.add_argument(
        "--table",
        default=os.environ.get(names.ENV_LEDGER_TABLE),
        help=f"the ledger table (default: ${names.ENV_LEDGER_TABLE}); AWS_ENDPOINT_URL points at the local stack",
    )

    secrets = commands.add_parser("secrets", help="the provider API-key secrets the policy names")
    secrets_commands = secrets.add_subparsers(dest="secrets_command", required=True)
    for name, text in (("set", "store a provider's API key, read from stdin"), ("check", "is every secret set?")):
        command = secrets_commands.add_parser(name, help=text)
        if name == "set":
            command.add_argument("provider", help="a provider of the policy with an api_key_secret")
        command.add_argument("--policy", type=Path, default=Path("policy/demo.yaml"), help="the policy file")
        command.add_argument("--region", default=os.environ.get(names.ENV_REGION), help="default: $AWS_REGION")

    args = parser.parse_args(argv)
    if args.command == "secrets":
        return _secrets(args)
    if args.command == "report":
        if not args.table:
            parser.error(f"report needs --table or ${names.ENV_LEDGER_TABLE}")
        return _report(args)
    if args.command == "ledger":
        return _ledger_command(parser, args)
    if args.command == "local":
        if local_cli is None:
            parser.error("the local stack needs the development install: `make run` or `uv sync --extra dev`")
        return int(local_cli.run(args))
    if args.command == "events":
        if not args.queue_url:
            parser.error(f"events tail needs --queue-url or ${names.ENV_EVENTS_QUEUE_URL}")
        return tail_events(args.queue_url, count=args.count, seconds=args.seconds)
    return _validate(args.file)


def _add_ledger(commands: Any) -> None:
    ledger = commands.add_parser("ledger", help="a team's calls for a month, or one request's, from the ledger")
    ledger_commands = ledger.add_subparsers(dest="ledger_command")
    replay = ledger_commands.add_parser(
        "replay", help="replay the stream ranges the ledger failure queue holds through the ledger function"
    )
    replay.add_argument(
        "--queue-url",
        default=os.environ.get(names.ENV_LEDGER_FAILURE_QUEUE_URL),
        help=f"the failure queue (stack output LedgerFailureQueueUrl; default: ${names.ENV_LEDGER_FAILURE_QUEUE_URL})",
    )
    replay.add_argument(
        "--function",
        help="the deployed ledger function to invoke (AWS); without it, the ledger handler runs in this "
        "process with this environment (the local stack; needs the development install)",
    )
    replay.add_argument("--dry-run", action="store_true", help="read each range and print it; change nothing")
    replay.add_argument(
        "--table",
        default=argparse.SUPPRESS,  # else None here would overwrite `ledger --table T replay`'s T
        help="the ledger table, to tell entries recorded from entries already there "
        f"(default: ${names.ENV_LEDGER_TABLE})",
    )
    which = ledger.add_mutually_exclusive_group()
    which.add_argument("--team", help="the team whose calls to list")
    which.add_argument("--request", help="one request id: its entries (one per hop when it fell back)")
    ledger.add_argument("--month", type=_month, default=datetime.now(UTC).strftime("%Y-%m"), help="UTC (default: this)")
    ledger.add_argument("--csv", type=Path, help="also write every field of every call to this CSV file")
    ledger.add_argument(
        "--table",
        default=os.environ.get(names.ENV_LEDGER_TABLE),
        help=f"the ledger table (default: ${names.ENV_LEDGER_TABLE}); AWS_ENDPOINT_URL points at the local stack",
    )


def _local_cli() -> ModuleType | None:
    """The local stack's CLI, present in the development install only."""
    try:
        return importlib.import_module("paymaster_local.cli")
    except ImportError:
        return None


def provider_secrets(policy: Policy) -> dict[str, str]:
    """Each provider's `api_key_secret`, for the providers that have one."""
    return {name: provider.api_key_secret for name, provider in policy.providers.items() if provider.api_key_secret}


def secret_status(client: Any, secret: str) -> str:
    """`set`, `missing` or `empty`, as the gateway would find the secret (`adapters/secrets.py`
    treats a missing or blank one as the provider failing); other errors raise."""
    from botocore.exceptions import ClientError  # noqa: PLC0415 - only these commands need it

    try:
        value = client.get_secret_value(SecretId=secret).get("SecretString")
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code == "ResourceNotFoundException":
            return "missing"
        if code == "InvalidRequestException":  # no current version: created without a value
            return "empty"
        raise
    return "set" if isinstance(value, str) and value.strip() else "empty"


def check_secrets(client: Any, policy: Policy, out: TextIO = sys.stdout) -> int:
    """One line per provider secret; 1 when any is missing or empty, with the command that fills it."""
    unset = 0
    for provider, secret in provider_secrets(policy).items():
        status = secret_status(client, secret)
        print(f"{status:<8} {secret}  (provider {provider})", file=out)
        if status != "set":
            unset += 1
            print(f"         fill it: paymaster secrets set {provider} --policy <file> < key.txt", file=out)
    return 1 if unset else 0


def set_secret(client: Any, secret: str, value: str) -> str:
    """Put `value` as the secret's current version, creating the secret if there is none.
    Returns what was done (`created` or `updated`); the value is never printed."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        client.put_secret_value(SecretId=secret, SecretString=value)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        client.create_secret(Name=secret, SecretString=value, Description="paymaster: a provider's API key")
        return "created"
    return "updated"


def _secrets(args: argparse.Namespace) -> int:
    import boto3  # noqa: PLC0415 - only these commands need it

    try:
        policy = load_policy(args.policy)
    except PolicyFileError as error:
        print(f"{args.policy}: invalid policy: {error}", file=sys.stderr)
        return 1
    client = boto3.client("secretsmanager", region_name=args.region)
    if args.secrets_command == "check":
        return check_secrets(client, policy)
    secret = provider_secrets(policy).get(args.provider)
    if secret is None:
        print(f"{args.policy}: provider {args.provider!r} has no api_key_secret", file=sys.stderr)
        return 1
    if sys.stdin.isatty():
        import getpass  # noqa: PLC0415

        value = getpass.getpass(f"API key for {args.provider} (stored in {secret}): ")
    else:
        value = sys.stdin.read()
    if not value.strip():
        print("refusing to store an empty key: the gateway would treat the provider as failing", file=sys.stderr)
        return 1
    print(f"{set_secret(client, secret, value.strip())} {secret} (provider {args.provider})")
    return 0


def _month(text: str) -> str:
    if not is_month(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a month: YYYY-MM")
    return text


def _ledger_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.ledger_command == "replay":
        if not args.queue_url or not args.table:
            parser.error(
                f"ledger replay needs --queue-url (or ${names.ENV_LEDGER_FAILURE_QUEUE_URL}) "
                f"and --table (or ${names.ENV_LEDGER_TABLE})"
            )
        return _replay(args)
    if not args.team and not args.request:
        parser.error("ledger needs --team or --request (or: ledger replay)")
    if not args.table:
        parser.error(f"ledger needs --table or ${names.ENV_LEDGER_TABLE}")
    return _ledger(args)


def _ledger(args: argparse.Namespace) -> int:
    import boto3  # noqa: PLC0415 - only this command needs it

    from paymaster import ledger_report  # noqa: PLC0415
    from paymaster.adapters.dynamodb_ledger import DynamoDBLedger  # noqa: PLC0415

    client = boto3.client("dynamodb", region_name=os.environ.get(names.ENV_REGION) or names.LOCAL_REGION)
    ledger = DynamoDBLedger(client, args.table)
    if args.request:
        return ledger_report.request_report(ledger, args.request, sys.stdout)
    return ledger_report.month_report(ledger, args.team, args.month, sys.stdout, args.csv)


def _replay(args: argparse.Namespace) -> int:
    import boto3  # noqa: PLC0415 - only this command needs it

    from paymaster.adapters.dynamodb_ledger import DynamoDBLedger  # noqa: PLC0415
    from paymaster.ledger_replay import Invoke, invoke_function, replay_failures  # noqa: PLC0415

    region = os.environ.get(names.ENV_REGION) or _queue_region(args.queue_url)
    invoke: Invoke
    if args.function:
        invoke = invoke_function(boto3.client("lambda", region_name=region), args.function)
    else:
        local_cli = _local_cli()
        if local_cli is None:
            print(
                "without --function the ledger handler runs here: that needs the development install", file=sys.stderr
            )
            return 2
        invoke = local_cli.ledger_handler()
    return replay_failures(
        boto3.client("sqs", region_name=region),
        boto3.client("dynamodbstreams", region_name=region),
        DynamoDBLedger(boto3.client("dynamodb", region_name=region), args.table),
        args.queue_url,
        invoke,
        dry_run=args.dry_run,
        out=sys.stdout,
    )


def _report(args: argparse.Namespace) -> int:
    import boto3  # noqa: PLC0415 - only this command needs it

    from paymaster.adapters.dynamodb_reports import DynamoDBReports  # noqa: PLC0415
    from paymaster.month_report import print_report  # noqa: PLC0415

    client = boto3.client("dynamodb", region_name=os.environ.get(names.ENV_REGION) or names.LOCAL_REGION)
    return print_report(DynamoDBReports(client, args.table), args.team, args.month, sys.stdout)


def _validate(path: Path) -> int:
    try:
        policy = load_policy(path)
    except PolicyFileError as error:
        print(f"{path}: invalid policy", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"{path}: valid — {len(policy.teams)} teams, {len(policy.models)} models, {len(policy.providers)} providers")
    return 0


def tail_events(
    queue_url: str,
    *,
    count: int | None = None,
    seconds: float | None = None,
    sqs: Any = None,
    out: TextIO = sys.stdout,
) -> int:
    """Long-polls the queue and prints each event (`event_line`) until `count` or `seconds`, or
    Ctrl-C. `sqs` is a boto3 SQS client; by default one for the environment (AWS_ENDPOINT_URL
    points it at the local stack)."""
    if sqs is None:
        import boto3  # noqa: PLC0415 - only this command needs it

        sqs = boto3.client("sqs", region_name=os.environ.get(names.ENV_REGION) or _queue_region(queue_url))
    deadline = None if seconds is None else time.monotonic() + seconds
    printed = 0
    try:
        while (count is None or printed < count) and (deadline is None or time.monotonic() < deadline):
            wait = 20 if deadline is None else max(0, min(20, int(deadline - time.monotonic())))
            answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
            for message in answer.get("Messages", []):
                print(event_line(message["Body"]), file=out, flush=True)
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                printed += 1
    except KeyboardInterrupt:
        pass
    return 0


def event_line(body: str) -> str:
    """One line per event: when, what, which request, whose, which model, and its money.

    `2026-11-29T14:03:09.252Z  CostRecorded        b7c5e0f2…  search/ranker  gpt-4o-mini  $0.000526`
    """
    try:
        event = json.loads(body)
        detail = event["detail"]
        kind = str(event["detail-type"])
    except (ValueError, KeyError, TypeError):
        return f"(not an EventBridge event) {body[:200]}"
    if not isinstance(detail, dict):
        return f"{kind} (no detail)"
    what = ""
    if kind == names.REQUEST_DENIED:
        rule = detail.get("rule") or {}
        what = f"denied by {rule.get('name')} ({detail.get('code')})"
    elif "cost_usd_micros" in detail:
        what = f"${format_usd(int(detail['cost_usd_micros']))}"
    when, whose = detail.get("time", event.get("time")), f"{detail.get('team')}/{detail.get('app')}"
    if kind == names.BUDGET_THRESHOLD_CROSSED:  # a budget's, not a request's: named by its crossing
        what = f"{detail.get('rule')} reached {detail.get('threshold_pct')} % ({detail.get('scope')})"
        return f"{when}  {kind:<18}  {detail.get('crossing_id')}  {detail.get('team')}  {what}"
    return f"{when}  {kind:<18}  {detail.get('request_id')}  {whose}  {detail.get('model')}  {what}".rstrip()


def _queue_region(queue_url: str) -> str:
    """`https://sqs.eu-central-1.amazonaws.com/…` → eu-central-1; anything else: the local region."""
    host = queue_url.split("/")[2] if queue_url.count("/") >= 2 else ""
    parts = host.split(".")
    return parts[1] if len(parts) > 3 and parts[0] == "sqs" else names.LOCAL_REGION


if __name__ == "__main__":
    sys.exit(main())
