"""What the counter store sends to the counters table, granted to each function that uses it.

The store (`paymaster.adapters.dynamodb_counters`) sends three operations, and a fourth item kind:
- `TransactWriteItems`, to reserve and to settle. IAM authorises each item of a transaction by its
  own action: the store's `Update` and `Put` items need `dynamodb:UpdateItem` and
  `dynamodb:PutItem` (a `ConditionCheck` item would need `dynamodb:ConditionCheckItem`, a `Delete`
  `dynamodb:DeleteItem`; the store sends neither, so neither is granted);
- `BatchGetItem`, to read counters (`/v1/usage`, remaining-budget headers);
- `Query` on the held-by-expiry index, for reservations a crash left behind;
- and, in a settlement of a team that keeps prompts, a `Put` item into the prompts table
  (`dynamodb:PutItem`, unconditional, so no read is needed either).

`table.grant_read_write_data` would add `index/*`, a wildcard for an index we can name, and
actions the store never sends (Scan, GetItem, DeleteItem, BatchWriteItem, …).
"""

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from paymaster import schema

TRANSACT_WRITE = ("dynamodb:UpdateItem", "dynamodb:PutItem")
READ_COUNTERS = ("dynamodb:BatchGetItem",)
QUERY_HELD = ("dynamodb:Query",)
PUT_PROMPT = ("dynamodb:PutItem",)


def grant_transactions(table: dynamodb.ITable, function: lambda_.Function) -> None:
    """The Put and Update items of a TransactWriteItems on `table`, nothing else: what applying a
    queued settlement to the counters needs, and what recording a ledger entry with its rollups
    needs on the ledger (`paymaster.adapters.dynamodb_ledger`)."""
    function.add_to_role_policy(iam.PolicyStatement(actions=list(TRANSACT_WRITE), resources=[table.table_arn]))


def grant_sweeps(counters: dynamodb.ITable, function: lambda_.Function) -> None:
    """What `AdmissionService.sweep` sends: the held-by-expiry index Query, and the settlement's
    Update items (the reservation's close, each counter's move; a sweep never fences, so it sends
    no Put, and it carries no prompt record)."""
    function.add_to_role_policy(iam.PolicyStatement(actions=["dynamodb:UpdateItem"], resources=[counters.table_arn]))
    function.add_to_role_policy(
        iam.PolicyStatement(actions=list(QUERY_HELD), resources=[f"{counters.table_arn}/index/{schema.HELD_INDEX}"])
    )


def grant_counter_store(counters: dynamodb.ITable, function: lambda_.Function) -> None:
    """Everything the store sends: transactions, counter reads and the held-index query."""
    function.add_to_role_policy(
        iam.PolicyStatement(actions=[*TRANSACT_WRITE, *READ_COUNTERS], resources=[counters.table_arn])
    )
    function.add_to_role_policy(
        iam.PolicyStatement(
            actions=list(QUERY_HELD),
            resources=[f"{counters.table_arn}/index/{schema.HELD_INDEX}"],
        )
    )


def grant_prompt_puts(prompts: dynamodb.ITable, function: lambda_.Function) -> None:
    """The prompts table's Put item of a settlement: write-only, the gateway never reads prompts."""
    prompts.grant(function, *PUT_PROMPT)
