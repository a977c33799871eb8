"""llama.cpp's AMX kernels crash on quantized weights: on a CPU with AMX, every
llama.cpp perflab runs opens without its extra buffer types, and runs."""

from __future__ import annotations

import pytest

from perflab.engines.base import GenerationOptions
from perflab.engines.cpu_kernels import (
    CPUINFO,
    cpu_flags,
    extra_buffers_off,
    llama_bench_flags,
    llama_server_flags,
)
from perflab.engines.launch import LaunchSettings, llama_server_command
from perflab.engines.llamacpp_engine import LlamaCppEngine
from perflab.measure.peer import run_llama_bench

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme avx2 avx512f avx512_vnni amx_bf16 avx512_fp16 amx_tile amx_int8
bugs\t\t: spectre_v1
"""
ZEN4 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"


def test_the_cpu_flags_are_read_from_cpuinfo():
    assert "amx_int8" in cpu_flags(SAPPHIRE_RAPIDS)
    assert "amx_int8" not in cpu_flags(ZEN4) and "avx512f" in cpu_flags(ZEN4)
    assert "asimd" in cpu_flags(ARM) and cpu_flags("") == frozenset()


def test_this_machine_s_answer_follows_its_own_cpuinfo():
    expected = CPUINFO.is_file() and "amx_int8" in cpu_flags(CPUINFO.read_text())
    assert extra_buffers_off() == expected


def test_llama_server_and_llama_bench_get_the_flag_exactly_where_the_engine_does():
    settings = LaunchSettings.from_config({"server": "llama-server"})
    argv = llama_server_command("llama-server", settings, "m.gguf", "m", "127.0.0.1", 9).argv
    assert ("--no-repack" in argv) == extra_buffers_off()
    assert llama_server_flags() == (["--no-repack"] if extra_buffers_off() else [])
    assert llama_bench_flags() == (["--repack", "0"] if extra_buffers_off() else [])


@pytest.mark.slow
def test_smollm2_s_q4_1_decodes_in_the_embedded_engine_and_llama_bench(smollm2_path, llama_tools):
    """On an AMX CPU both crashed (SIGSEGV in ggml_backend_amx_mul_mat) before their
    extra buffer types were turned off; llama-server's own run is
    tests/test_llama_server_suites.py."""
    engine = LlamaCppEngine(smollm2_path, n_ctx=512, n_threads=1)
    try:
        info = engine.preflight()
        chunks = list(engine.stream("What is AI?", GenerationOptions(max_tokens=8)))
    finally:
        engine.close()
    assert info["extra_buffer_types"].startswith("off" if extra_buffers_off() else "llama")
    assert sum(c.n_tokens for c in chunks) >= 1 and chunks[-1].done
    (tg,), command = run_llama_bench(
        str(llama_tools / "llama-bench"), str(smollm2_path), 1, [], 8, 1
    )
    assert tg.tps_mean > 0 and ("--repack" in command) == extra_buffers_off()
