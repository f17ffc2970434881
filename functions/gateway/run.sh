#!/bin/bash
# Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap) runs this script as the handler.
# The managed runtime adds the layers' /opt/python to sys.path only for its own bootstrap, so a
# separately started interpreter needs it on PYTHONPATH to import paymaster and its dependencies.
export PYTHONPATH="/opt/python${PYTHONPATH:+:$PYTHONPATH}"
# uvloop and httptools, not uvicorn's pure-Python default (asyncio, h11): about 40 % less CPU per
# request (docs/BENCHMARKS.md). uvloop 0.23 carries the fix for responses reaching the wrong
# request under load (MagicStack/uvloop#645).
exec python -m uvicorn --factory paymaster.composition:gateway_app --host 127.0.0.1 --port "${PORT:-8080}" \
  --no-access-log --loop uvloop --http httptools
