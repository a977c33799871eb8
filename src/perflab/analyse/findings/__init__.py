"""Findings: every question of the log answered once, into a frozen dataclass.

One module per question (basic, prompt_length, temperature, concurrency,
kv_cache, kv_memory, threads, capacity, interference, resources, placement,
bottleneck, breakdown, expectations, roofline, runlog); each ``summary`` is a pure function of
the summary frame and its context (``context.Context``, read from the run's
metadata). ``compute`` runs them all; ``Findings`` is written to
``results/<run>/findings.json`` and read back by the charts and the log.
Numbers only: the words are in ``perflab.present.wording`` and the template.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from perflab.analyse.findings import (
    basic,
    bottleneck,
    breakdown,
    capacity,
    comparison,
    concurrency,
    expectations,
    interference,
    kv_cache,
    kv_memory,
    peer,
    placement,
    prompt_length,
    resources,
    roofline,
    runlog,
    serialize,
    temperature,
    threads,
)
from perflab.analyse.findings.context import Context, context_from_metadata, read_preflight
from perflab.analyse.findings.frame import Condition, conditions, with_defaults
from perflab.analyse.verdict import Outcome, holm
from perflab.engines import capabilities_for
from perflab.engines.base import Capabilities
from perflab.measure.machine import MachineCeilings, read_machine
from perflab.models.gguf_facts import ModelFacts, read_model_facts

__all__ = [
    "Context",
    "Findings",
    "compute",
    "context_from_metadata",
    "load",
    "write",
    "write_findings",
]


@dataclass(frozen=True)
class Findings:
    engine: str
    capabilities: Capabilities
    repeats: int
    conditions: tuple[Condition, ...]
    basic: basic.BasicFinding
    prompt_length: prompt_length.PromptLengthFinding
    temperature: temperature.TemperatureFinding
    concurrency: concurrency.ConcurrencyFinding
    kv_cache: kv_cache.KvCacheFinding
    interference: interference.InterferenceFinding
    resources: resources.ResourcesFinding | None
    bottleneck: bottleneck.BottleneckFinding
    breakdown: breakdown.BreakdownFinding
    expectations: expectations.ExpectationFinding
    run: runlog.RunLog
    comparison: comparison.ComparisonFinding | None = None  # with two or more targets
    capacity: tuple[capacity.CapacityFinding, ...] = ()  # per target that ran the rate suite
    peer: peer.PeerFinding | None = None  # llama-bench beside perflab (peer.llama_bench)
    roofline: roofline.RooflineFinding | None = None  # the machine's ceilings (roofline)
    placement: placement.PlacementFinding | None = None  # where the model lived (Ollama)
    threads: threads.ThreadsFinding | None = None  # the threads suite, beside llama-bench -t
    kv_memory: kv_memory.KvMemoryFinding | None = None  # RSS growth beside the formula's bytes


def compute(
    summary: pl.DataFrame,
    context: Context,
    resources_by_id: dict[str, resources.ExperimentResources] | None = None,
    requests_path: str | Path | None = None,
    disk_path: str | Path = ".",
    peer_path: str | Path | None = None,
    ceilings: tuple[MachineCeilings, ModelFacts] | None = None,
    threads_peer_path: str | Path | None = None,
) -> Findings:
    everything = with_defaults(summary)
    frame = _baseline_rows(everything, context.baseline)
    resources_by_id = resources_by_id or {}
    core = _core_findings(frame, context, resources_by_id, threads_peer_path)
    length_finding = prompt_length.summary(frame, core.disturbed)
    prompts = list(core.basic.prompts)
    found = Findings(
        engine=context.engine,
        capabilities=core.capabilities,
        repeats=core.repeats,
        conditions=core.conditions,
        basic=core.basic,
        prompt_length=length_finding,
        temperature=temperature.summary(frame, core.disturbed),
        concurrency=core.concurrency,
        kv_cache=kv_cache.summary(frame, core.disturbed),
        interference=core.interference,
        resources=core.resources,
        bottleneck=core.bottleneck,
        breakdown=breakdown.summary(prompts, list(core.conditions)),
        expectations=expectations.summary(prompts, list(core.conditions), context.expected_tps),
        run=_run_log(frame, context, core, requests_path, disk_path),
        comparison=_comparison(everything, context, resources_by_id),
        capacity=capacity.summary(
            requests_path, context.slo, context.sweep_skipped, context.baseline, context.probes
        ),
        peer=_peer(peer_path, requests_path, context),
        roofline=_roofline(ceilings, prompts, length_finding),
        placement=placement.summary(list(context.placements)),
        threads=core.threads,
        kv_memory=_kv_memory(frame, resources_by_id, ceilings),
    )
    return family_corrected(found)


def _baseline_rows(everything: pl.DataFrame, baseline: str | None) -> pl.DataFrame:
    """The baseline target's rows, or every row when the run has one target."""
    if baseline is None:
        return everything
    return everything.filter(pl.col("target") == baseline)


@dataclass(frozen=True)
class CoreFindings:
    """The findings that the run log and the other findings are built from."""

    capabilities: Capabilities
    interference: interference.InterferenceFinding
    disturbed: tuple[str, ...]
    conditions: tuple[Condition, ...]
    basic: basic.BasicFinding
    concurrency: concurrency.ConcurrencyFinding
    resources: resources.ResourcesFinding | None
    bottleneck: bottleneck.BottleneckFinding
    threads: threads.ThreadsFinding | None
    repeats: int


def _core_findings(
    frame: pl.DataFrame,
    context: Context,
    resources_by_id: dict[str, resources.ExperimentResources],
    threads_peer_path: str | Path | None,
) -> CoreFindings:
    capabilities = capabilities_for(context.engine, context.server)
    interference_finding = interference.summary(frame, context.results_dir)
    disturbed = interference_finding.disturbed_ids
    every = conditions(frame, disturbed)
    concurrency_finding = concurrency.summary(frame, capabilities, disturbed)
    resources_finding = resources.summary(frame, resources_by_id)
    return CoreFindings(
        capabilities=capabilities,
        interference=interference_finding,
        disturbed=disturbed,
        conditions=tuple(every),
        basic=basic.summary(frame, context.prompt_order, disturbed),
        concurrency=concurrency_finding,
        resources=resources_finding,
        bottleneck=bottleneck.summary(
            resources_finding,
            concurrency_finding,
            capabilities,
            context.usable_cores,
            context.model_size_gb,
            context.logical_cores,
            disturbed,
        ),
        threads=threads.summary(frame, threads_peer_path, disturbed),
        repeats=int(frame["repeats"].max() or 1) if frame.height else 1,
    )


def _run_log(
    frame: pl.DataFrame,
    context: Context,
    core: CoreFindings,
    requests_path: str | Path | None,
    disk_path: str | Path,
) -> runlog.RunLog:
    cold = runlog.cold_start(frame, context.preflight_cold_start)
    return runlog.RunLog(
        started=context.started,
        ended=context.ended,
        total_s=context.ended - context.started
        if context.started is not None and context.ended is not None
        else None,
        model_load_s=context.model_load_s,
        cold_load_s=cold.load_s if cold else None,
        cold_ttft_s=cold.ttft_s if cold else None,
        cold_source=cold.source if cold else None,
        cold_in_process=cold.in_process if cold else False,
        n_experiments=frame.height,
        n_requests=sum(c.n_requests for c in core.conditions),
        n_errors=sum(c.n_errors for c in core.conditions),
        errors=runlog.error_counts(requests_path),
        failed=runlog.failed_conditions(list(core.conditions)),
        storage=runlog.storage(disk_path),
        ideas=_ideas(context, core),
        repeats=core.repeats,
        setup=context.setup,
        basic_span=context.basic_span,
        advanced_span=context.advanced_span,
    )


def _ideas(context: Context, core: CoreFindings) -> tuple[runlog.Idea, ...]:
    return runlog.ideas(
        core.bottleneck,
        core.concurrency,
        core.interference,
        core.repeats,
        core.capabilities.parallel_setting,
        context.physical_cores if context.threads_configurable else None,
        _measured_threads(core.threads, core.capabilities.thread_setting),
    )


def family_corrected(found: Findings) -> Findings:
    """The Day-1 verdicts with Holm's correction over the log's family of them:
    each temperature's speed, the KV cache's TTFT and the concurrency throughput."""
    heat, kv, workers = found.temperature, found.kv_cache, found.concurrency
    family = [*heat.speed, kv.test, workers.test]
    adjusted = holm(family)
    speed = tuple(adjusted[: len(heat.speed)])
    kv_test, workers_test = adjusted[len(heat.speed) :]
    return replace(
        found,
        temperature=temperature.rejudged(heat, speed) if heat.speed else heat,
        kv_cache=kv_cache.rejudged(kv, kv_test) if kv_test is not None else kv,
        concurrency=concurrency.rejudged(workers, workers_test)
        if workers_test is not None
        else workers,
    )


def _measured_threads(found, setting: str | None) -> tuple[str, int] | None:
    """The engine's thread setting at the count shown fastest, where one was."""
    if found is None or setting is None or found.verdict is not Outcome.CHANGED:
        return None
    return f"engine.{setting}", found.best


def _roofline(ceilings, basic_prompts, length) -> roofline.RooflineFinding | None:
    if ceilings is None:
        return None
    machine, model = ceilings
    prefill = (length.prefill_tps, length.prefill_tps_low, length.prefill_tps_high)
    return roofline.summary(machine, model, basic_prompts, prefill)


def _kv_memory(frame, resources_by_id, ceilings) -> kv_memory.KvMemoryFinding | None:
    cache_type = "f16"  # as the roofline reckons the cache
    formula = ceilings[1].kv_bytes_per_token(cache_type) if ceilings else None
    return kv_memory.summary(frame, resources_by_id, formula, cache_type)


def _peer(peer_path, requests_path, context: Context) -> peer.PeerFinding | None:
    """llama-bench beside every target's rates (the baseline's alone without targets)."""
    if not peer_path or not requests_path:
        return None
    return peer.summary(peer_path, requests_path, list(context.targets) or [None])


def _comparison(
    frame: pl.DataFrame, context: Context, resources_by_id: dict
) -> comparison.ComparisonFinding | None:
    if context.baseline is None or len(context.targets) < 2:
        return None
    disturbed = interference.summary(frame, context.results_dir).disturbed_ids
    return comparison.summary(
        frame,
        context.baseline,
        list(context.targets),
        disturbed,
        resources_by_id,
        context.model_sizes,
    )


def write(findings: Findings, path: str | Path) -> None:
    from perflab.core.records import write_text_atomic

    write_text_atomic(Path(path), serialize.dumps(findings) + "\n")


def load(path: str | Path) -> Findings:
    return serialize.load(Findings, path)


def write_findings(
    summary_path,
    requests_path,
    metadata_path,
    config: dict,
    findings_path,
    setup_benchmarks: dict[str, str | Path | None] | None = None,
    preflight_paths: list[str | Path] = (),
    peer_path: str | Path | None = None,
    machine_path: str | Path | None = None,
    model_path: str | Path | None = None,
    threads_peer_path: str | Path | None = None,
    probe_paths: list[str | Path] = (),
) -> Findings:
    """Read the run's tables, compute every finding, write ``findings.json``.

    ``setup_benchmarks``: the Snakemake benchmark files of the setup jobs by step
    name (``model_build``, ``preflight``); a step without one is left out.
    ``preflight_paths``: the pre-flight checks' outputs (the baseline's is read).
    ``probe_paths``: the rate sweep's probes (``rate_probe.json``, ``rate_probe/<target>.json``)."""
    from perflab.analyse.table_files import read_metadata_index
    from perflab.config.targets import baseline

    metadata = read_metadata_index(metadata_path)
    results_dir = str(Path(findings_path).parent)
    context = context_from_metadata(
        metadata,
        config,
        results_dir,
        runlog.setup_steps(setup_benchmarks or {}),
        read_preflight(preflight_paths, baseline(config)),
    )
    findings = compute(
        pl.read_parquet(summary_path),
        replace(context, probes=capacity.read_probes(probe_paths, config)),
        resources_by_id={
            m.experiment_id: resources.ExperimentResources.from_metadata(m) for m in metadata
        },
        requests_path=requests_path,
        disk_path=results_dir,
        peer_path=peer_path,
        ceilings=_read_ceilings(machine_path, model_path),
        threads_peer_path=threads_peer_path,
    )
    write(findings, findings_path)
    return findings


def _read_ceilings(machine_path, model_path) -> tuple[MachineCeilings, ModelFacts] | None:
    if not machine_path or not model_path:
        return None
    return read_machine(machine_path), read_model_facts(model_path)
