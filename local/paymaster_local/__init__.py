"""The local stack: AWS stand-ins (moto), fake providers and the gateway, on 127.0.0.1.

Development and test tooling only; nothing here ships to Lambda.
"""
