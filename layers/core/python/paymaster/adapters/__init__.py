"""Implementations of the ports: AWS services, providers, identity, settings."""
