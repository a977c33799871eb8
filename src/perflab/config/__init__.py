"""Validated configuration: loading, checks, targets and the sweep's experiments."""
