"""Keeps a server no longer than the process that started it.

Run as ``python server_guard.py COMMAND...`` with a pipe on stdin (stdlib only,
so it starts in milliseconds and imports nothing of perflab). It starts COMMAND
in a process group of its own, writes that process's PID on stdout, and waits.
When stdin reaches end of file (perflab stopped it, exited, or was killed with
``kill -9``) it sends the group SIGTERM, then SIGKILL after a grace period. When
the server exits by itself, whatever it left in its group (Ollama's runners) is
killed too. The guard exits with the server's exit status (128 + signal number
for a signal).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time

GRACE_S = float(os.environ.get("PERFLAB_SERVER_GRACE_S", "10"))
POLL_S = 0.2


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop(server: subprocess.Popen) -> int:
    """SIGTERM to the server's group; SIGKILL to what is left after the grace period."""
    _kill_group(server.pid, signal.SIGTERM)
    try:
        code = server.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        _kill_group(server.pid, signal.SIGKILL)
        code = server.wait()
    _kill_group(server.pid, signal.SIGKILL)  # children that outlived it
    return code


def _status(code: int) -> int:
    return 128 - code if code < 0 else code


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGHUP):  # perflab decides when the server stops
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: None)  # wakes select; stdin decides
    try:
        server = subprocess.Popen(  # its output goes to the guard's stderr: the server's log
            argv, start_new_session=True, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno()
        )
    except OSError as exc:
        print(f"cannot start {argv[0]}: {exc}", file=sys.stderr, flush=True)
        return 127
    sys.stdout.write(f"{server.pid}\n")
    sys.stdout.flush()
    sys.stdout.close()
    stdin = sys.stdin.fileno()
    while True:
        code = server.poll()
        if code is not None:
            _kill_group(server.pid, signal.SIGKILL)
            return _status(code)
        try:
            ready, _, _ = select.select([stdin], [], [], POLL_S)
        except InterruptedError:
            continue
        if ready and not os.read(stdin, 4096):  # end of file: stop the server
            started = time.monotonic()
            code = _stop(server)
            print(
                f"server stopped by perflab in {time.monotonic() - started:.2f} s",
                file=sys.stderr,
                flush=True,
            )
            return _status(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
