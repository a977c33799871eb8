"""What the findings need besides the summary frame: the engine, the machine, the
run's span and targets, read from the experiments' metadata, the config and the
pre-flight check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from perflab.analyse.findings import capacity, runlog
from perflab.core.records import ColdStart
from perflab.measure.metadata import ExperimentMetadata
from perflab.measure.preflight_info import PreflightInfo
from perflab.measure.provenance import EngineInfo, HostInfo


@dataclass(frozen=True)
class Context:
    """What the findings need besides the summary."""

    engine: str
    prompt_order: tuple[str, ...] = ()
    expected_tps: tuple[float, float] = (10.0, 20.0)
    usable_cores: int | None = None
    physical_cores: int | None = None
    threads_configurable: bool = False  # the engine takes engine.n_threads (it reports them)
    logical_cores: int | None = None
    model_size_gb: float | None = None
    model_load_s: float | None = None
    results_dir: str = "results/RUN"
    started: float | None = None
    ended: float | None = None
    setup: tuple[runlog.SetupStep, ...] = ()  # the model build and pre-flight jobs, timed
    basic_span: tuple[float | None, float | None] = (None, None)  # the basic suite's experiments
    advanced_span: tuple[float | None, float | None] = (None, None)  # every other suite's
    targets: tuple[str, ...] = ()  # a config with targets: their names, in config order
    baseline: str | None = None  # its experiments answer the Day-1 questions
    model_sizes: dict[str, float] | None = None  # GB on disk, by target
    slo: capacity.SloTargets = capacity.SloTargets()  # the rate suite's latency targets
    sweep_skipped: tuple[tuple[str | None, float, str], ...] = ()  # (target, rate, why)
    probes: tuple[tuple[str | None, capacity.ProbeCapacity], ...] = ()  # (target, its probe)
    preflight_cold_start: ColdStart | None = None  # the model load its timed request paid
    server: str | None = None  # the server perflab launched for the engine (engine.launch)
    # (experiment id, its /api/ps reading or None) where the engine reads one (Ollama)
    placements: tuple[tuple[str, dict | None], ...] = ()


def context_from_metadata(
    metadata: list[ExperimentMetadata],
    config: dict,
    results_dir: str,
    setup: tuple[runlog.SetupStep, ...] = (),
    preflight: PreflightInfo | None = None,
) -> Context:
    """The findings' context from the experiments' metadata, the config, the
    timed setup jobs and the pre-flight check of the baseline (or only) target.

    With targets, the Day-1 questions are answered for the baseline target:
    its experiments' metadata describe the engine.
    """
    from perflab.config.targets import baseline, target_names

    chosen = baseline(config)
    sizes = {}
    for item in metadata:
        target = item.experiment.get("target")
        size = item.engine.model_gb
        if target is not None and size is not None:
            sizes.setdefault(target, size)
    everything = metadata
    if chosen is not None:
        metadata = [m for m in metadata if m.experiment.get("target") == chosen]
    engine = metadata[0].engine if metadata else EngineInfo()
    host = metadata[0].host if metadata else HostInfo()
    suites = config.get("suites", {})
    started, ended = runlog.span(everything)
    return Context(
        engine=engine.engine or _engine_name(config, chosen),
        prompt_order=tuple(suites.get("basic", {}).get("prompts", ())),
        expected_tps=tuple(config.get("expected_tps", (10, 20))),
        # the server's threads when the engine says (embedded), else every logical core
        usable_cores=engine.n_threads or host.logical_cores,
        physical_cores=host.physical_cores,
        threads_configurable=engine.reports_threads,
        logical_cores=host.logical_cores,
        model_size_gb=engine.model_size_gb,
        model_load_s=engine.load_s,
        results_dir=results_dir,
        started=started,
        ended=ended,
        basic_span=runlog.span(metadata, lambda suites: "basic" in suites),
        advanced_span=runlog.span(metadata, lambda suites: bool(set(suites) - {"basic"})),
        setup=setup,
        targets=target_names(config),
        baseline=chosen,
        model_sizes=sizes,
        slo=capacity.SloTargets.from_config(config),
        sweep_skipped=tuple(
            (m.experiment.get("target"), m.experiment["rate"], m.skipped)
            for m in everything
            if m.skipped
        ),
        preflight_cold_start=preflight.cold_start if preflight else None,
        server=engine.server_name,
        placements=tuple(
            (m.experiment_id, m.placement.as_dict() if m.placement else None)
            for m in metadata
            if m.reads_placement
        ),
    )


def read_preflight(paths, target: str | None) -> PreflightInfo | None:
    """The pre-flight check of ``target`` (of the one engine for None) among ``paths``
    (``preflight.json``, or ``preflight/<target>.json``); None when it is not there."""
    import json

    for path in paths or ():
        path = Path(path)
        if target is None or path.stem == target:
            try:
                return PreflightInfo.from_json(json.loads(path.read_text()))
            except (OSError, ValueError):
                return None
    return None


def _engine_name(config: dict, target: str | None) -> str:
    from perflab.config.targets import target_config

    return target_config(config, target)["engine"]["name"]
