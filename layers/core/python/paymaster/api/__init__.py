"""The HTTP entry: the OpenAI-compatible API as one ASGI app (uvicorn locally, LWA in Lambda)."""
