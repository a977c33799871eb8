"""What one experiment's ``metadata.json`` holds: what was measured, how, on what,
and what it used. The experiment writes ``ExperimentMetadata.to_json()``; every
reader of the file reads it back with ``from_json``, which takes a file of an older
perflab too (an entry it lacks is None)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_ps import ModelPlacement
from perflab.measure.gpu import GpuRecord
from perflab.measure.provenance import EngineInfo, HostInfo
from perflab.measure.resource_summary import ResourceSummary


@dataclass(frozen=True)
class RunTimes:
    """When the requests ran and how many failed (``metadata.json`` ``run``)."""

    started: float | None = None  # epoch seconds, the first request (warm-up included)
    ended: float | None = None
    measured_started: float | None = None  # the first measured request
    measured_wall_s: float | None = None
    n_records: int | None = None
    error_rate: float | None = None
    error_budget: float | None = None
    partial: bool | None = None  # some request failed

    @classmethod
    def from_json(cls, data: dict) -> RunTimes:
        return cls(**known_fields(cls, data))


@dataclass(frozen=True)
class ExperimentMetadata:
    """One experiment, measured or skipped (``skipped`` says why it was not).

    Entries kept as their JSON: ``experiment`` (``Experiment.params()``), ``design``
    (the run's order), ``plan`` (a closed or open-loop plan), ``server_metrics``
    (its names depend on the server), ``schedule`` (open loop) and ``job``."""

    experiment: dict
    engine: EngineInfo
    host: HostInfo
    run: RunTimes
    job: dict  # where the job's own time went: start-up, engine set-up, requests
    perflab_version: str | None = None
    runner_version: int | None = None
    config_hash: str | None = None
    resources: ResourceSummary | None = None  # None: nothing was sampled
    design: dict | None = None
    options: GenerationOptions | None = None
    plan: dict | None = None
    server_metrics: dict | None = None
    gpu: GpuRecord | None = None  # None: skipped, or from before GPU records
    schedule: dict | None = None  # open loop: whether the client kept the schedule
    reads_placement: bool = False  # the engine lists its loaded model (Ollama)
    placement: ModelPlacement | None = None  # None there: the model was not listed
    skipped: str | None = None

    @property
    def experiment_id(self) -> str:
        return self.experiment["id"]

    @property
    def used(self) -> ResourceSummary:
        """What the sampler saw; an empty summary where nothing was sampled."""
        return self.resources or ResourceSummary()

    def to_json(self) -> dict:
        if self.skipped is not None:
            return self._skipped_json()
        data = {
            "experiment": self.experiment,
            "design": self.design,
            "engine": self.engine.to_json(),
            "options": asdict(self.options) if self.options is not None else None,
            "plan": self.plan,
            **self._provenance_json(),
            "run": asdict(self.run),
            "resources": self.used.as_columns(),
            "server_metrics": self.server_metrics,
            "gpu": self.gpu.to_json() if self.gpu is not None else None,
            "job": self.job,
        }
        if self.schedule is not None:
            data["schedule"] = self.schedule
        if self.reads_placement:
            data["placement"] = self.placement.as_dict() if self.placement else None
        return data

    def _provenance_json(self) -> dict:
        return {
            "host": self.host.to_json(),
            "perflab_version": self.perflab_version,
            "runner_version": self.runner_version,
            "config_hash": self.config_hash,
        }

    def _skipped_json(self) -> dict:
        return {
            "experiment": self.experiment,
            "engine": self.engine.to_json(),
            **self._provenance_json(),
            "run": asdict(self.run),
            "resources": {},
            "job": self.job,
            "skipped": self.skipped,
        }

    @classmethod
    def from_json(cls, data: dict) -> ExperimentMetadata:
        options, gpu, placement = data.get("options"), data.get("gpu"), data.get("placement")
        return cls(
            experiment=data.get("experiment") or {},
            engine=EngineInfo.from_json(data.get("engine") or {}),
            host=HostInfo.from_json(data.get("host") or {}),
            run=RunTimes.from_json(data.get("run") or {}),
            job=data.get("job") or {},
            perflab_version=data.get("perflab_version"),
            runner_version=data.get("runner_version"),
            config_hash=data.get("config_hash"),
            resources=ResourceSummary.from_columns(data["resources"])
            if data.get("resources")
            else None,
            design=data.get("design"),
            options=GenerationOptions(**known_fields(GenerationOptions, options))
            if options
            else None,
            plan=data.get("plan"),
            server_metrics=data.get("server_metrics"),
            gpu=GpuRecord.from_json(gpu) if gpu is not None else None,
            schedule=data.get("schedule"),
            reads_placement="placement" in data,
            placement=ModelPlacement.from_dict(placement) if placement else None,
            skipped=data.get("skipped"),
        )


def known_fields(cls, data: dict) -> dict:
    """The entries of ``data`` that name a field of the dataclass ``cls``."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
