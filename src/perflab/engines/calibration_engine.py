"""The ``calibration`` engine: the ``ollama`` engine, over real HTTP, against a
calibration server that this engine starts on loopback with known timings."""

from __future__ import annotations

from collections.abc import Iterator

from perflab.engines import base
from perflab.engines.base import Chunk, GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.engines.ollama_ps import ModelPlacement


class CalibrationEngine:
    name = "calibration"
    capabilities = base.CALIBRATION

    def __init__(self, model: str, timing: dict, timeout_s: float = 120.0):
        from perflab.calibration import CalibrationServer, TimingModel

        timing = {"models": [model], **timing}
        self.server = CalibrationServer(TimingModel.from_dict(timing)).start()
        self.client = OllamaEngine(model=model, host=self.server.url, timeout_s=timeout_s)

    def preflight(self) -> dict:
        info = self.client.preflight()
        return info | {
            "engine": self.name,
            "transport": "the ollama engine over HTTP to an in-process calibration server",
            "calibration": self.server.timing.to_dict(),
        }

    @property
    def placement(self) -> ModelPlacement | None:
        return self.client.placement

    def read_placement(self) -> ModelPlacement | None:
        return self.client.read_placement()

    def stream(self, prompt: str, options: GenerationOptions) -> Iterator[Chunk]:
        return self.client.stream(prompt, options)

    def close(self) -> None:
        self.client.close()
        self.server.stop()
