"""Embedded decode speed: perflab's llama.cpp engine against llama.cpp's own counters.

Loads a GGUF (by default the tiny random-weight model, built into a temporary
directory) and, alternating in this one run, generates ``--tokens`` tokens per
request:

- perflab: the ``llamacpp`` engine through the runner, as an experiment does;
  decode tokens/s per request is (output tokens - 1) / (e2e - TTFT);
- bare loop: llama-cpp-python's ``generate()`` alone, timed the same way;
- counters: llama.cpp's own perf counters for the same requests
  (n_eval / t_eval), the C library's decode time without Python around it.

It prints the medians and the ratios perflab / counters and perflab / bare
loop. With ``--llama-bench PATH`` it also runs llama-bench (``tg`` of the same
length, same threads, ``--repetitions`` times) on the same GGUF and prints
each side's mean with its 95 % CI and perflab's decode as a ratio of
llama-bench's tg with the ratio's CI (floor: 0.95). Python-side sampling over the 128 k-entry vocabulary is the gap between
the bare loop and the counters; on an 8B model it is well under 1 %. Run by hand:

    python bench/embedded_decode.py [--model PATH.gguf] [--requests 20] [--tokens 64]

Quote ratios from one run; these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from perflab.engines.base import GenerationOptions
from perflab.engines.llamacpp_engine import LlamaCppEngine
from perflab.measure.runner import LoadPlan, run_load

ROOT = Path(__file__).resolve().parents[1]
VOCAB = ROOT / "cache" / "vocab" / "ggml-vocab-llama-bpe.gguf"
PROMPT = "Explain the concept of machine learning in one paragraph."


def tiny_model(directory: Path) -> Path:
    from perflab.models.tiny import TinyModelSpec, build_tiny_model, fetch_vocab

    if not VOCAB.exists():
        fetch_vocab(VOCAB)
    return build_tiny_model(VOCAB, directory / "tiny.gguf", TinyModelSpec())


def perflab_request(engine: LlamaCppEngine, options: GenerationOptions) -> tuple[float, float]:
    """(client decode tokens/s, llama.cpp counter decode tokens/s) of one request."""
    result = run_load(engine, PROMPT, options, LoadPlan(requests=1), experiment_id="bench")
    (record,) = result.records
    if record.status != "ok" or not record.tps:
        raise RuntimeError(f"request failed: {record.error}")
    raw = record.server_raw
    return record.tps, raw["n_eval"] / (raw["t_eval_ms"] / 1e3)


def bare_request(engine: LlamaCppEngine, options: GenerationOptions) -> float:
    """llama-cpp-python's generate() alone, timed as the runner times it."""
    llm = engine.llm
    llm.reset()
    tokens = llm.tokenize(PROMPT.encode(), add_bos=True)
    eos = engine._eos_tokens()
    processor = engine._forbid(eos)
    llm.set_seed(options.seed)
    first = last = None
    generated = 0
    for _token in llm.generate(
        tokens, temp=options.temperature, reset=True, logits_processor=processor
    ):
        last = time.perf_counter()
        first = first or last
        generated += 1
        if generated >= options.max_tokens:
            break
    return (generated - 1) / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: the tiny model)")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--llama-bench", default=None, help="llama-bench binary: compare with tg")
    parser.add_argument("--repetitions", type=int, default=10, help="llama-bench repetitions")
    parser.add_argument("--ignore-eos", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="perflab-decode-"))
    try:
        model = args.model or tiny_model(root)
        engine = LlamaCppEngine(model, n_ctx=2048, n_threads=args.threads)
        info = engine.preflight()
        # the tiny random model needs EOS forbidden (a Python logits processor); a real
        # model ends by itself and samples in C alone
        ignore_eos = args.model is None if args.ignore_eos is None else args.ignore_eos
        options = GenerationOptions(max_tokens=args.tokens, ignore_eos=ignore_eos, temperature=0.7)
        perflab_request(engine, options)  # warm-up
        client, counters, bare = [], [], []
        for _ in range(args.requests):  # alternate: drift hits both alike
            tps, counter_tps = perflab_request(engine, options)
            client.append(tps)
            counters.append(counter_tps)
            bare.append(bare_request(engine, options))
        engine.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    median = {
        name: statistics.median(v)
        for name, v in (("perflab", client), ("bare", bare), ("counters", counters))
    }
    print(
        f"model {info['model']} ({info['model_size_gb'] * 1e3:.0f} MB, loaded in {info['load_s']:.2f} s), "
        f"{info['n_threads']} threads; {args.requests} requests of {args.tokens} tokens each, alternating"
    )
    for name, values in (
        ("perflab engine", client),
        ("bare generate()", bare),
        ("llama.cpp counters", counters),
    ):
        print(
            f"  {name:19} decode tok/s  min {min(values):8.1f}  median {statistics.median(values):8.1f}  max {max(values):8.1f}"
        )
    print(
        f"  perflab / counters: {median['perflab'] / median['counters']:.3f}   "
        f"perflab / bare generate(): {median['perflab'] / median['bare']:.3f}   "
        f"bare generate() / counters: {median['bare'] / median['counters']:.3f}"
    )
    if args.llama_bench:
        against_llama_bench(args, model, info["n_threads"], client, counters)


def against_llama_bench(args, model, threads, client: list[float], counters: list[float]):
    from perflab.analyse.findings.peer import _mean_ci
    from perflab.measure.peer import run_llama_bench

    (tg,), _ = run_llama_bench(
        args.llama_bench, str(model), threads, [], args.tokens, args.repetitions
    )
    print(
        f"  llama-bench tg{tg.n_tokens}: {tg.tps_mean:.1f} ± {tg.tps_ci95:.1f} t/s "
        f"(95 % CI, {tg.repetitions} repetitions, {tg.threads} threads)"
    )
    for name, values in (("perflab engine", client), ("llama.cpp counters", counters)):
        mean, half = _mean_ci(values)
        ratio = mean / tg.tps_mean
        spread = ratio * ((half / mean) ** 2 + (tg.tps_ci95 / tg.tps_mean) ** 2) ** 0.5
        print(
            f"  {name:19} {mean:.1f} ± {half:.1f} tok/s: ×{ratio:.3f} of tg "
            f"(95 % CI {ratio - spread:.3f}–{ratio + spread:.3f}; floor 0.95)"
        )


if __name__ == "__main__":
    main()
