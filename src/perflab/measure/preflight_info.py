"""What the pre-flight check wrote (``preflight.json``): the engine's own account, the
estimate of the run's length, the model load its timed request paid, and the model
file's fingerprint, which every experiment reuses rather than hashing the file again."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from perflab.core.records import ColdStart
from perflab.measure.estimate import RunEstimate
from perflab.measure.metadata import known_fields
from perflab.measure.provenance import EngineInfo

OWN_ENTRIES = ("estimate", "cold_start", "model_fingerprint")


@dataclass(frozen=True)
class PreflightInfo:
    engine: EngineInfo
    estimate: RunEstimate | None = None  # None: no plan was given, or no request timed
    cold_start: ColdStart | None = None
    model_fingerprint: dict | None = None  # provenance.model_fingerprint of the model file

    def to_json(self) -> dict:
        data = self.engine.to_json()
        if self.estimate is not None:
            data["estimate"] = asdict(self.estimate) | {"total_s": self.estimate.total_s}
        if self.cold_start is not None:
            data["cold_start"] = asdict(self.cold_start)
        if self.model_fingerprint is not None:
            data["model_fingerprint"] = self.model_fingerprint
        return data

    @classmethod
    def from_json(cls, data: dict) -> PreflightInfo:
        estimate, cold = data.get("estimate"), data.get("cold_start")
        engine = {k: v for k, v in data.items() if k not in OWN_ENTRIES}
        return cls(
            engine=EngineInfo.from_json(engine),
            estimate=RunEstimate(**known_fields(RunEstimate, estimate)) if estimate else None,
            cold_start=ColdStart(**known_fields(ColdStart, cold))
            if isinstance(cold, dict)
            else None,
            model_fingerprint=data.get("model_fingerprint"),
        )
