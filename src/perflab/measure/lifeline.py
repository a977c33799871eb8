"""An experiment process ends when told to, or when the Snakemake that started it dies.

``kill -9`` of Snakemake leaves its job's shell and this process orphaned;
left alone they would keep measuring and overlap the resumed run. A watcher
thread notices the Snakemake process is gone and interrupts the main thread
with SIGTERM, whose handler (like SIGINT's and SIGHUP's) raises
``Interrupted``: the experiment then keeps its records and exits.
"""

from __future__ import annotations

import os
import signal
import threading

import psutil

WATCH_INTERVAL_S = 0.5


class Interrupted(Exception):  # noqa: N818 - reads as what happened
    """A signal or the death of the parent workflow ended the experiment."""


_reason: list[str] = []


def _raise_interrupted(signum, frame) -> None:
    name = _reason[0] if _reason else signal.Signals(signum).name
    raise Interrupted(name)


def install_signal_handlers() -> None:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP raise Interrupted in the main thread."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)


def workflow_ancestor(process: psutil.Process | None = None) -> psutil.Process | None:
    """The nearest ancestor running Snakemake, else the direct parent."""
    process = process or psutil.Process()
    try:
        parents = process.parents()
        for parent in parents:
            if any("snakemake" in part for part in parent.cmdline()):
                return parent
        return parents[0] if parents else None
    except psutil.Error:
        return None


def _alive(process: psutil.Process) -> bool:
    """Running, and not a zombie waiting to be reaped; is_running is false for a reused pid."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def watch_parent(interval_s: float = WATCH_INTERVAL_S) -> threading.Thread | None:
    """Start a daemon thread that sends this process SIGTERM once the ancestor is gone."""
    ancestor = workflow_ancestor()
    if ancestor is None or ancestor.pid == 1:
        return None
    described = f"its workflow (pid {ancestor.pid}) ended"

    def watch() -> None:
        while _alive(ancestor):
            threading.Event().wait(interval_s)
        _reason[:] = [described]
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="perflab-parent-watch", daemon=True)
    thread.start()
    return thread
