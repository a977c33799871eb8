"""Measuring: one experiment's load, records, resource samples, locks and progress."""
