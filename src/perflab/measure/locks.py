"""One benchmark per target at a time, across processes and workflows.

Snakemake's ``llm_server=1`` holds only inside one Snakemake process; two
workflows (two run names, two checkouts) would measure one server at once.
Each experiment therefore holds an OS file lock named after its target: the
server's host and port, or the model file for the embedded engine. The lock
dies with its process, so a killed run never leaves it held.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_DIR_ENV = "PERFLAB_LOCK_DIR"


def lock_dir() -> Path:
    """Where the locks live: ``$PERFLAB_LOCK_DIR``, else ``/tmp/perflab-locks``.

    Not ``$TMPDIR``: Snakemake sets it per job, and every workflow on the
    machine must find the same locks.
    """
    configured = os.environ.get(LOCK_DIR_ENV)
    if configured:
        return Path(configured)
    shared = Path("/tmp")
    return (shared if shared.is_dir() else Path(tempfile.gettempdir())) / "perflab-locks"


def target_key(config: dict, model_path: str | None = None) -> str:
    """What an experiment occupies: ``server 127.0.0.1:11434``, ``llamacpp /model.gguf``
    (each engine's ``lock_key``)."""
    from perflab.engines.registry import engine_kind

    engine = config["engine"]
    if engine.get("launch"):  # a fresh server per job, on a free port: the machine is shared
        return f"launched {engine['launch']['server']} on this machine"
    return engine_kind(engine["name"]).lock_key(engine, model_path)


def machine_key(spec: dict) -> str:
    """What targets on one machine share: its CPU and GPU (``machine`` of a target's spec)."""
    return f"machine {spec['machine']}"


def lock_path(key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-")[:60]
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return lock_dir() / f"{slug}-{digest}.lock"


def describe_holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not holder:
        return "another process"
    return (
        f"pid {holder.get('pid')} (experiment {holder.get('experiment')}, writing to "
        f"{holder.get('out_dir')}, since {holder.get('since')})"
    )


@contextlib.contextmanager
def target_lock(
    key: str, holder: dict, on_wait: Callable[[str], None], poll_s: float = 1.0
) -> Iterator[Path]:
    """Hold the lock for ``key``; while another process holds it, wait and say who."""
    path = lock_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        path.parent.chmod(0o1777)  # other users' runs lock the same targets
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        _acquire(fd, key, path, on_wait, poll_s)
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        os.pwrite(fd, json.dumps(holder | {"pid": os.getpid(), "since": stamp}).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _acquire(fd: int, key: str, path: Path, on_wait: Callable[[str], None], poll_s: float):
    announced = None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = describe_holder(path)
        if holder != announced:
            on_wait(f"waiting for {key}: held by {holder}")
            announced = holder
        time.sleep(poll_s)
