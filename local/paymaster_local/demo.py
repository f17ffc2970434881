"""`make demo`: the demo policy at work on the local stack, with the clients apps use.

1. search's dev app has 60 requests/minute: the 61st request is throttled (429, Retry-After).
2. search has $2,000/month, alerts at 50 and 80 % and moves to nova-lite at 80 %: the month is
   seeded a micro-dollar short of 50 %, then of 80 %, and a request crosses each; the budget
   alarms' two emails arrive (docs/ALARMS.md), and past 80 % gpt-4o-mini is served by nova-lite.
3. At $1,999.9999 a request without max_tokens still gets an answer: max_tokens shrinks to what
   the last 100 µUSD afford.
4. At $1,999.99995 nothing useful is affordable: the request is refused (insufficient_quota).

Seeding writes the month's counter directly into the local DynamoDB, standing in for a month of
traffic; everything else goes through the gateway.
"""

import argparse
import json
import time
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import boto3
import httpx
import openai
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from paymaster import names, schema
from paymaster.adapters.policy_file import load_policy
from paymaster.client import SigV4Auth
from paymaster.domain.limits import RequestFacts, bucket
from paymaster.domain.money import usd
from paymaster.domain.windows import window
from paymaster_local.cli import DEMO_POLICY
from paymaster_local.credentials import session_for
from paymaster_local.resources import COUNTERS_TABLE
from paymaster_local.stack import LocalStack, free_port, local_stack

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Summarise our platform budget in one line"}]


def client(stack: LocalStack, profile: str) -> OpenAI:
    auth = SigV4Auth(session=session_for(stack.credentials, profile))
    # openai 3 types http_client as its own httpx fork; an httpx.Client works (tests/e2e_local).
    http = httpx.Client(auth=auth)
    return OpenAI(base_url=stack.url + "/v1", api_key="unused", http_client=http, max_retries=0)  # type: ignore[arg-type]


def seed_month(stack: LocalStack, spent_usd: str) -> None:
    policy = load_policy(stack.policy_file)
    rule = next(rule for rule in policy.rules if rule.name == "search-monthly")
    facts = RequestFacts(team="search", app="ranker", env="prod", model="gpt-4o-mini")
    month = window(rule.period, rule.zone, datetime.now(UTC))
    amount = str(usd(spent_usd))
    boto3.client(
        "dynamodb",
        endpoint_url=stack.aws_url,
        region_name=names.LOCAL_REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto accepts anything
    ).put_item(
        TableName=COUNTERS_TABLE,
        Item={
            schema.PARTITION_KEY: {"S": schema.counter_pk(rule.name, bucket(rule, facts))},
            schema.SORT_KEY: {"S": month.id},
            schema.COMMITTED: {"N": amount},
            schema.SPENT: {"N": amount},
            schema.RULE: {"S": rule.name},
            schema.WINDOW_END: {"S": month.end.isoformat()},
        },
    )


def show_refusal(error: openai.RateLimitError) -> None:
    body = error.response.json()["error"]
    interesting = ("retry-after", "x-should-retry", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests")
    headers = {name: error.response.headers[name] for name in interesting if name in error.response.headers}
    print(f"   → {error.status_code} {body['code']}: {body['message']}")
    print(f"     headers: {headers}")
    print(f"     details: {json.dumps(body['paymaster'])}")


def show_emails(stack: LocalStack, count: int, timeout_s: float = 60.0) -> None:
    """The budget alarms' emails as the team's subscribers get them: the runner writes each as an
    .eml file under the state directory (and prints it in `make run`'s terminal)."""
    deadline = time.monotonic() + timeout_s
    while len(emails := sorted(stack.mail_dir.glob("*.eml"))) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    print(f"\n   {len(emails)} budget alarm email(s) in {stack.mail_dir}:")
    for path in emails:
        message = message_from_bytes(path.read_bytes(), policy=default)
        print(f"\n   To: {message['To']}\n   Subject: {str(message['Subject']).strip()}\n")
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        print("\n".join(f"   | {line}" for line in text.rstrip().splitlines()))


def run(stack: LocalStack) -> None:
    print("\n1. search/ranker-dev may send 60 requests a minute (rule dev-requests)")
    dev = client(stack, "search-ranker-dev")
    # Fixed windows: 60 in this minute, or up to 120 if the burst straddles a minute boundary.
    for sent in range(1, 122):
        try:
            dev.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=20)
        except openai.RateLimitError as refused:
            print(f"   {sent - 1} requests answered; request {sent} is throttled:")
            show_refusal(refused)
            break

    search = client(stack, "search-ranker")
    print("\n2. search's $2,000 month alerts at 50 % and 80 %; past 80 % it moves to nova-lite")
    seed_month(stack, "999.999999")
    search.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=20)
    print("   at $999.999999 a request crosses 50 %")
    seed_month(stack, "1599.999999")
    raw = search.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
    print("   at $1,599.999999 a request crosses 80 %:")
    headers = raw.headers
    print(f"   asked for gpt-4o-mini, served by {raw.parse().model} ({headers['x-paymaster-deployment']});")
    print(f"   x-paymaster-downgraded-from: {headers.get('x-paymaster-downgraded-from')}")
    print(
        f"   tightest budget: {headers['x-paymaster-budget-rule']} {headers['x-paymaster-budget-remaining']} "
        f"of {headers['x-paymaster-budget-limit']} USD left, resets {headers['x-paymaster-budget-reset']}"
    )

    show_emails(stack, 2)

    print("\n3. search has spent $1,999.9999: a request without max_tokens gets what is left")
    seed_month(stack, "1999.9999")
    raw = search.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
    chosen = raw.headers["x-paymaster-max-tokens"]
    print(f"   served by {raw.parse().model} with max_tokens {chosen}, set by the gateway")

    print("\n4. search has spent $1,999.99995: nothing useful is affordable")
    seed_month(stack, "1999.99995")
    try:
        search.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    except openai.RateLimitError as refused:
        show_refusal(refused)

    print("\n5. GET /v1/usage for search:")
    for rule in search.get("/usage", cast_to=httpx.Response).json()["rules"]:
        used, limit = rule["used"], rule["limit"]
        print(f"   {rule['rule']:<22} {rule['scope']:<20} used {used:>12} of {limit:>7} ({rule['unit']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, default=Path(".paymaster/demo"))
    args = parser.parse_args()
    args.state_dir.mkdir(parents=True, exist_ok=True)
    with (
        (args.state_dir / "gateway.log").open("wb") as log,
        local_stack(DEMO_POLICY, port=free_port(), state_dir=args.state_dir, gateway_output=log) as stack,
    ):
        print(f"local stack up at {stack.url} with {stack.policy_file.name}")
        run(stack)


if __name__ == "__main__":
    main()
