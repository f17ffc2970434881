"""Use cases: what the gateway does for one request, written against the ports."""
