"""What the run itself knows: its time, setup costs, errors, storage, and
what to try next as config changes perflab can run."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from perflab.analyse.findings.bottleneck import QUEUE_SHARE, Bottleneck, BottleneckFinding
from perflab.analyse.findings.concurrency import ConcurrencyFinding, ConcurrencyMode
from perflab.analyse.findings.frame import Condition
from perflab.analyse.findings.interference import InterferenceFinding
from perflab.core.records import ColdStart
from perflab.measure.metadata import ExperimentMetadata

DAY2_STORAGE_GB = 10.0  # the learning log asks for about 10 GB free for Day 2


@dataclass(frozen=True)
class ErrorCount:
    error_class: str
    count: int
    experiments: tuple[str, ...]


@dataclass(frozen=True)
class FailedCondition:
    condition_id: str
    experiment_ids: tuple[str, ...]
    n_errors: int
    n_requests: int
    error_classes: str | None


@dataclass(frozen=True)
class Storage:
    path: str
    free_gb: float | None
    needed_gb: float

    @property
    def enough(self) -> bool | None:
        return None if self.free_gb is None else self.free_gb >= self.needed_gb


@dataclass(frozen=True)
class Idea:
    """One change to try: a config key (or server setting) and its new value."""

    setting: str
    value: str
    because: Bottleneck | str  # the finding that suggests it


@dataclass(frozen=True)
class SetupStep:
    """One setup job (model build, pre-flight check), from its Snakemake benchmark file."""

    name: str  # "model_fetch", "model_build" or "preflight"
    seconds: float  # wall-clock time of the job
    started: float | None  # epoch seconds: ended − seconds
    ended: float | None  # epoch seconds: when the benchmark file was written
    max_rss_mb: float | None  # peak memory of the job


@dataclass(frozen=True)
class RunLog:
    started: float | None  # epoch seconds of the first experiment's start
    ended: float | None
    total_s: float | None  # first experiment's start to last experiment's end
    model_load_s: float | None  # the engine's model load at preflight (embedded engine)
    cold_load_s: float | None  # the model load a first request paid (the server's account)
    n_experiments: int
    n_requests: int
    n_errors: int
    errors: tuple[ErrorCount, ...]
    failed: tuple[FailedCondition, ...]
    storage: Storage
    ideas: tuple[Idea, ...]
    repeats: int
    setup: tuple[SetupStep, ...] = ()
    basic_span: tuple[float | None, float | None] = (None, None)  # epoch start, end
    advanced_span: tuple[float | None, float | None] = (None, None)
    cold_ttft_s: float | None = None  # the client's view: that request's first token
    cold_source: str | None = None  # "preflight", or the experiment whose warm-up paid it
    cold_in_process: bool = False  # the cold start is the embedded engine's model open

    @property
    def setup_s(self) -> float | None:
        return sum(step.seconds for step in self.setup) if self.setup else None

    @property
    def setup_started(self) -> float | None:
        return min((s.started for s in self.setup if s.started is not None), default=None)

    @property
    def setup_ended(self) -> float | None:
        return max((s.ended for s in self.setup if s.ended is not None), default=None)

    @property
    def hands_on_s(self) -> float | None:
        """Setup plus measurement: the machine's share of the day."""
        parts = [t for t in (self.setup_s, self.total_s) if t is not None]
        return sum(parts) if parts else None


def span(
    metadata: list[ExperimentMetadata], suites: Callable[[list[str]], bool] | None = None
) -> tuple[float | None, float | None]:
    """First start and last end of the experiments (those whose suites pass ``suites``)."""
    runs = [m.run for m in metadata if suites is None or suites(m.experiment["suites"])]
    return (
        min((r.started for r in runs), default=None),
        max((r.ended for r in runs), default=None),
    )


def setup_step(name: str, benchmark_path: str | Path) -> SetupStep | None:
    """A setup job's timing from its Snakemake ``benchmark:`` file (tab-separated:
    ``s`` wall seconds, ``max_rss`` MB, …); None when it is missing or unreadable."""
    path = Path(benchmark_path)
    try:
        table = pl.read_csv(path, separator="\t", infer_schema_length=0)
        ended = path.stat().st_mtime
    except (OSError, pl.exceptions.PolarsError):
        return None
    if table.is_empty() or "s" not in table.columns:
        return None
    seconds = _number(table["s"][0])
    if seconds is None:
        return None
    max_rss = _number(table["max_rss"][0]) if "max_rss" in table.columns else None
    return SetupStep(name, seconds, ended - seconds, ended, max_rss)


def _number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None  # Snakemake writes "NA" or "-" for what it could not measure


def setup_steps(benchmarks: dict[str, str | Path | None]) -> tuple[SetupStep, ...]:
    """The setup jobs that left a benchmark file, earliest first."""
    steps = [setup_step(name, path) for name, path in benchmarks.items() if path]
    return tuple(sorted((s for s in steps if s), key=lambda s: s.started or 0.0))


def error_counts(requests_path: str | Path | None) -> tuple[ErrorCount, ...]:
    """Measured failed requests by error class, from ``requests.parquet`` (lazily); a request
    the open-loop client dropped was never sent and is no error."""
    if requests_path is None or not Path(requests_path).exists():
        return ()
    counts = (
        pl.scan_parquet(requests_path)
        .filter(~pl.col("is_warmup") & ~pl.col("status").is_in(["ok", "dropped"]))
        .group_by(pl.col("error_class").fill_null("unknown"))
        .agg(pl.len().alias("count"), pl.col("experiment_id").unique().sort())
        .sort("count", "error_class", descending=[True, False])
        .collect()
    )
    return tuple(
        ErrorCount(row["error_class"], int(row["count"]), tuple(row["experiment_id"]))
        for row in counts.to_dicts()
    )


def storage(path: str | Path) -> Storage:
    try:
        free = shutil.disk_usage(path).free / 1e9
    except OSError:
        free = None
    return Storage(str(path), free, DAY2_STORAGE_GB)


def waits_for_slots(concurrency: ConcurrencyFinding) -> bool:
    """The extra requests waited for a slot (or, undecided, a queue of QUEUE_SHARE or
    more): more slots (the parallel setting) are what to try, though the queue the
    slots explain is no bottleneck."""
    if concurrency.mode is None:
        return (concurrency.queue_share or 0.0) >= QUEUE_SHARE
    return concurrency.mode is ConcurrencyMode.QUEUES


def ideas(
    bottleneck: BottleneckFinding,
    concurrency: ConcurrencyFinding,
    interference: InterferenceFinding,
    repeats: int,
    parallel_setting: str | None,
    physical_cores: int | None,
    measured_threads: tuple[str, int] | None = None,
) -> tuple[Idea, ...]:
    """Changes to try next, most telling first; ``physical_cores`` None: no thread setting.
    ``measured_threads``: the thread setting and the count the threads suite showed
    fastest, which replaces any guess at the threads."""
    found: list[Idea] = []
    if measured_threads:
        setting, count = measured_threads
        found.append(Idea(setting, str(count), "threads"))
    primary = bottleneck.primary
    workers = [p.workers for p in concurrency.points] or [1]
    if parallel_setting and (primary == Bottleneck.QUEUEING or waits_for_slots(concurrency)):
        slots = concurrency.parallel_requests or 1
        found.append(Idea(parallel_setting, str(slots * 2), "slots"))
    if primary in (Bottleneck.QUEUEING, Bottleneck.UNDETERMINED):
        more = sorted({*workers, max(workers) * 2})
        found.append(Idea("suites.concurrency.workers", str(more), primary))
    if primary == Bottleneck.CPU and physical_cores and not measured_threads:
        found.append(Idea("engine.n_threads", str(physical_cores), primary))
    elif primary == Bottleneck.CPU:
        found.append(Idea("engine.model", "a smaller quantization of the same model", primary))
    if primary == Bottleneck.MEMORY:
        found.append(Idea("engine.n_ctx", "2048", primary))
    if primary == Bottleneck.IO:
        found.append(Idea("generation.keep_alive", "30m", primary))
    if primary == Bottleneck.CLIENT:
        found.append(Idea("sampler.interval_s", "1.0", primary))
    if primary == Bottleneck.UNDETERMINED:
        found.append(Idea("suites.resources.duration_s", "120", primary))
    if repeats < 2:
        found.append(Idea("repeats", "3", "one_pass"))
    if interference.disturbed:
        found.append(Idea("repeats", str(max(3, repeats + 1)), "disturbed"))
    unique: dict[str, Idea] = {}
    for idea in found:
        unique.setdefault(idea.setting, idea)
    return tuple(unique.values())


def failed_conditions(items: list[Condition]) -> tuple[FailedCondition, ...]:
    return tuple(
        FailedCondition(c.condition_id, c.experiment_ids, c.n_errors, c.n_requests, c.error_classes)
        for c in items
        if c.n_errors
    )


def cold_start(frame: pl.DataFrame, preflight: ColdStart | None) -> ColdStart | None:
    """The largest model load a first request paid, whichever job sent it: the
    pre-flight check's timed request, or an experiment's warm-up (each experiment
    of the embedded and calibration engines starts its own server and loads again).
    None when no request reported a load above 0."""
    candidates = [preflight] if preflight is not None and preflight.load_s is not None else []
    columns = ("experiment_id", "cold_load_s", "cold_ttft_s")
    for experiment_id, load_s, ttft_s in frame.select(columns).iter_rows():
        if load_s is not None:
            candidates.append(ColdStart(experiment_id, load_s, ttft_s, None))
    paid = max(candidates, key=lambda cold: cold.load_s, default=None)
    return paid if paid is not None and paid.load_s > 0 else None
