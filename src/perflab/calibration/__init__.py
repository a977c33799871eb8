"""The calibration server: an Ollama-API server with scripted timings and faults.

Point perflab's ``ollama`` engine (or any Ollama client) at it and compare
what the client measures with what the server knows it did. See
``docs/calibration.md``.
"""

from perflab.calibration.faults import FAULT_NAMES, Fault, parse_fault
from perflab.calibration.model import (
    DEFAULT_MODEL,
    TimingModel,
    count_tokens,
    normalize_model_name,
    parse_duration,
)
from perflab.calibration.server import (
    FAULT_HEADER,
    FAULT_OPTION,
    REQUEST_ID_HEADER,
    CalibrationServer,
    RequestLog,
    refused_url,
    unused_port,
)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m perflab.calibration``)."""
    from perflab.calibration.cli import main as cli_main

    return cli_main(argv)


__all__ = [
    "DEFAULT_MODEL",
    "FAULT_HEADER",
    "FAULT_NAMES",
    "FAULT_OPTION",
    "REQUEST_ID_HEADER",
    "CalibrationServer",
    "Fault",
    "RequestLog",
    "TimingModel",
    "count_tokens",
    "main",
    "normalize_model_name",
    "parse_duration",
    "parse_fault",
    "refused_url",
    "unused_port",
]
