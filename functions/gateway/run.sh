#!/bin/bash
# Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap) runs this script as the handler.
# The managed runtime adds the layers' /opt/python to sys.path only for its own bootstrap, so a
# separately started interpreter needs it on PYTHONPATH to import paymaster and its dependencies.
export PYTHONPATH="/opt/python${PYTHONPATH:+:$PYTHONPATH}"
# asyncio and h11, named so that no package in the layers changes them: uvloop and httptools
# measured no CPU gain beyond this machine's noise (docs/BENCHMARKS.md §5), and are native code
# with a history (MagicStack/uvloop#645) that a gateway need not carry for nothing.
exec python -m uvicorn --factory paymaster.composition:gateway_app --host 127.0.0.1 --port "${PORT:-8080}" \
  --no-access-log --loop asyncio --http h11
