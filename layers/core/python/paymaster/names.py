"""Every name paymaster shares between the code, the CDK app and the tests.

Tables, attributes, environment variables, headers and event names are defined here once;
adapters, constructs (`infra/`), the local stack and test fixtures import them.
"""

from typing import Final

# DynamoDB: one table for counters (windows, buckets, reservations), one for the ledger.
PARTITION_KEY: Final = "pk"
SORT_KEY: Final = "sk"
TTL_ATTRIBUTE: Final = "expires_at"

COUNTERS_TABLE_ID: Final = "Counters"
LEDGER_TABLE_ID: Final = "Ledger"

# EventBridge.
EVENT_SOURCE: Final = "paymaster"
COST_RECORDED: Final = "CostRecorded"
BUDGET_THRESHOLD_CROSSED: Final = "BudgetThresholdCrossed"
REQUEST_DENIED: Final = "RequestDenied"

# Environment variables read by the settings at cold start.
ENV_COUNTERS_TABLE: Final = "PAYMASTER_COUNTERS_TABLE"
ENV_LEDGER_TABLE: Final = "PAYMASTER_LEDGER_TABLE"
ENV_EVENT_BUS: Final = "PAYMASTER_EVENT_BUS"
ENV_POLICY_FILE: Final = "PAYMASTER_POLICY_FILE"
ENV_IDENTITY: Final = "PAYMASTER_IDENTITY"  # "request-context" (AWS) or "sigv4" (local)
ENV_LOCAL_PRINCIPALS: Final = "PAYMASTER_LOCAL_PRINCIPALS"
ENV_REGION: Final = "AWS_REGION"
ENV_TIKTOKEN_DIR: Final = "PAYMASTER_TIKTOKEN_DIR"
ENV_MAX_BODY_BYTES: Final = "PAYMASTER_MAX_BODY_BYTES"

# HTTP headers.
HEADER_REQUEST_CONTEXT: Final = "x-amzn-request-context"  # set by Lambda Web Adapter
HEADER_REQUEST_ID: Final = "x-request-id"
HEADER_DEPLOYMENT: Final = "x-paymaster-deployment"

# SigV4 scope the gateway accepts.
SIGV4_SERVICE: Final = "execute-api"
LOCAL_REGION: Final = "us-east-1"
ENV_PROVIDER_ENDPOINTS: Final = "PAYMASTER_PROVIDER_ENDPOINTS"  # local only: {"provider": "url"}
