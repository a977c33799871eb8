"""The load run with the sampler on, and what stops it early."""

from __future__ import annotations

import contextlib
import threading

from perflab.core.records import RequestRecord
from perflab.engines.registry import engine_kind
from perflab.measure.gpu import Gpus
from perflab.measure.open_loop import OpenLoopPlan, ScheduleCheck, run_open_loop
from perflab.measure.runner import RunResult, run_load


def drive_load(
    config, experiment, engine, plan, options, writer, progress, watch
) -> tuple[RunResult, ScheduleCheck | None, tuple[list, Gpus | None], str | None]:
    """Run the load with the sampler on; a write error, an interrupt or the end of a
    launched server stops new requests. ``watch`` sees every record (it reads where
    the model lives once one succeeded). Returns the run, the open-loop schedule check
    (None for closed loop), its samples and GPUs, and why the server ended if it did."""
    from perflab.measure.sampler import ResourceSampler

    kind = engine_kind(config["engine"]["name"])

    stop = threading.Event()
    server_failure = getattr(engine, "server_failure", None)
    failures: list[str] = []

    def on_record(record: RequestRecord) -> None:
        writer(record)
        watch.saw(record)
        if writer.error is not None:
            stop.set()
        if record.error_class and server_failure is not None and not failures:
            failure = server_failure()
            if failure:  # the server is gone: no request could succeed after this one
                failures.append(failure)
                stop.set()
        if progress is not None:
            progress(record)

    launched = getattr(engine, "server_pids", None)
    scraper = metrics_scraper(engine)
    sampler = ResourceSampler(
        interval_s=config["sampler"]["interval_s"],
        server_pids=launched or kind.server_pids(config),
        server_remote=False if launched else kind.server_is_remote(config),
        extra=scraper,
    )
    run = run_open_loop if isinstance(plan, OpenLoopPlan) else run_load
    try:
        closing = contextlib.closing(scraper) if scraper else contextlib.nullcontext()
        with closing, sampler:
            outcome = run(
                engine,
                experiment.prompt,
                options,
                plan,
                experiment_id=experiment.id,
                on_record=on_record,
                stop=stop,
                prompt_cache=experiment.prompt_cache,
            )
    except BaseException:
        stop.set()  # workers send nothing more; the one in flight ends with the engine
        raise
    if server_failure is not None and not failures and server_failure():
        failures.append(server_failure())  # it died after the last request
    result, schedule = outcome if isinstance(outcome, tuple) else (outcome, None)
    return result, schedule, (sampler.samples, sampler.gpus), failures[0] if failures else None


def metrics_scraper(engine):
    """A reader of the server's own metrics, for a launched llama-server with them on."""
    url = getattr(engine, "metrics_url", None)
    if not url:
        return None
    from perflab.measure.server_metrics import LlamaServerScraper

    return LlamaServerScraper(url)
