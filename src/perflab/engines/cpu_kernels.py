"""Which of llama.cpp's CPU kernels perflab lets it use on this machine.

On a CPU with AMX (Intel Sapphire Rapids and later), a native build of llama.cpp
moves Q4_0, Q4_1, Q8_0 and K-quant weights into its AMX buffer type, and the
AMX matrix multiply of llama-cpp-python 0.3.36's llama.cpp crashes on them
(SIGSEGV in ``ggml_backend_amx_mul_mat`` on SmolLM2's Q4_1, measured; llama.cpp
issues #20824 and #16315). Every llama.cpp that perflab runs — the embedded
engine, a llama-server it launches, llama-bench — is then opened without its
extra buffer types (llama.cpp's ``use_extra_bufts``, ``--no-repack``,
``--repack 0``), so the three run the same kernels and none crashes. Elsewhere
they keep llama.cpp's defaults.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

AMX_FLAG = "amx_int8"
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in a ``/proc/cpuinfo`` text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.cache
def extra_buffers_off() -> bool:
    """True on a CPU with AMX: llama.cpp is opened without its extra buffer types."""
    try:
        text = CPUINFO.read_text()
    except OSError:  # not Linux: no AMX kernels are registered there by default
        return False
    return AMX_FLAG in cpu_flags(text)


EXTRA_BUFFERS_NOTE = "off: this CPU has AMX, whose llama.cpp kernels crash on quantized weights"


def llama_server_flags() -> list[str]:
    """llama-server's flags for this machine's kernels."""
    return ["--no-repack"] if extra_buffers_off() else []


def llama_bench_flags() -> list[str]:
    """llama-bench's flags for this machine's kernels."""
    return ["--repack", "0"] if extra_buffers_off() else []


@contextlib.contextmanager
def model_params_for_this_cpu():
    """While open, llama-cpp-python's ``Llama(...)`` builds its model parameters with the
    extra buffer types off where ``extra_buffers_off()``: its constructor exposes no
    argument for ``use_extra_bufts``, so its defaults function is wrapped meanwhile."""
    if not extra_buffers_off():
        yield
        return
    import llama_cpp.llama as llama_module

    library = llama_module.llama_cpp
    defaults = library.llama_model_default_params

    def without_extra_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params

    library.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        library.llama_model_default_params = defaults
