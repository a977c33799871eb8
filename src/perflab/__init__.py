"""perflab: benchmark local LLM inference and write the findings up."""

__version__ = "0.1.0"
