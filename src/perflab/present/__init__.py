"""Presentation: wording, the log, charts and run comparisons."""
