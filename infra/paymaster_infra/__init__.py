"""The paymaster CDK app: one construct per concern, stateful resources in their own stack."""
