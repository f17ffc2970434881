"""For apps: sign calls to paymaster with the app's own IAM credentials.

    import httpx
    from openai import OpenAI
    from paymaster.client import SigV4Auth

    client = OpenAI(base_url=URL + "/v1", api_key="unused", http_client=httpx.Client(auth=SigV4Auth()))

Works with `httpx.AsyncClient` (and `AsyncOpenAI`) and with streaming. Credentials come from the
default boto3 chain (environment, profile, instance/task role) unless given, and are refreshed by
botocore when they are temporary.
"""

from collections.abc import Generator

import boto3
import httpx
from botocore.auth import SigV4Auth as _BotocoreSigV4
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from paymaster import names

# Sign only headers that no proxy rewrites; API Gateway checks whatever SignedHeaders lists.
_SIGNED = ("host", "content-type")


class SigV4Auth(httpx.Auth):
    requires_request_body = True

    def __init__(
        self,
        region: str | None = None,
        credentials: Credentials | None = None,
        *,
        session: boto3.Session | None = None,
    ) -> None:
        session = session or boto3.Session()
        found = credentials or session.get_credentials()
        if found is None:
            raise ValueError("no AWS credentials found (set AWS_PROFILE, environment variables, or pass them)")
        self._credentials = found
        self._region = region or session.region_name or names.LOCAL_REGION

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        headers = {name: request.headers[name] for name in _SIGNED if name in request.headers}
        unsigned = AWSRequest(method=request.method, url=str(request.url), headers=headers, data=request.content)
        _BotocoreSigV4(self._credentials.get_frozen_credentials(), names.SIGV4_SERVICE, self._region).add_auth(unsigned)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in unsigned.headers:
                request.headers[name] = unsigned.headers[name]
        yield request
