"""The calibration server: Ollama's and the OpenAI API with scripted timings and faults.

Point perflab's ``ollama`` or ``openai`` engine (or any client of either API)
at it and compare what the client measures with what the server knows it
did. See ``docs/calibration.md``.
"""

from perflab.calibration.faults import FAULT_NAMES, Fault, parse_fault
from perflab.calibration.http import FAULT_HEADER, REQUEST_ID_HEADER
from perflab.calibration.model import (
    DEFAULT_MODEL,
    TimingModel,
    count_tokens,
    normalize_model_name,
    parse_duration,
)
from perflab.calibration.ollama_api import FAULT_OPTION
from perflab.calibration.openai_api import FAULT_FIELD
from perflab.calibration.request import GenerationRequest, RequestLog
from perflab.calibration.scheduler import Scheduler
from perflab.calibration.server import CalibrationServer


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m perflab.calibration``)."""
    from perflab.calibration.cli import main as cli_main

    return cli_main(argv)


__all__ = [
    "DEFAULT_MODEL",
    "FAULT_FIELD",
    "FAULT_HEADER",
    "FAULT_NAMES",
    "FAULT_OPTION",
    "REQUEST_ID_HEADER",
    "CalibrationServer",
    "Fault",
    "GenerationRequest",
    "RequestLog",
    "Scheduler",
    "TimingModel",
    "count_tokens",
    "main",
    "normalize_model_name",
    "parse_duration",
    "parse_fault",
]
