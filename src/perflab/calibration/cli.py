"""Command line for the calibration server.

    python -m perflab.calibration --port 11435 --ttft-fixed 0.05 --itl 0.02

Serves until Ctrl-C (or SIGTERM). Flags override values from ``--config``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from perflab.calibration.faults import parse_fault
from perflab.calibration.model import TimingModel
from perflab.calibration.server import CalibrationServer, RequestLog

DEFAULT_PORT = 11435

# flag dest -> TimingModel field
_FLAG_FIELDS = {
    "load_time": "load_time_s",
    "keep_alive": "keep_alive_s",
    "ttft_fixed": "ttft_fixed_s",
    "ttft_per_token": "ttft_per_token_s",
    "itl": "itl_s",
    "itl_sd": "itl_sd_s",
    "output_tokens": "output_tokens",
    "num_parallel": "num_parallel",
    "max_queue": "max_queue",
    "prompt_cache": "prompt_cache",
    "tokens_per_chunk": "tokens_per_chunk",
    "reasoning_tokens": "reasoning_tokens",
    "reasoning_field": "reasoning_field",
    "tokens_per_word": "tokens_per_word",
    "seed": "seed",
    "stall": "stall_s",
    "vram_share": "vram_share",
    "version": "version",
}


def _pair(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.rpartition("=") if what == "rate" else text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _fault_rate(text: str) -> tuple[str, float]:
    spec, value = _pair(text, "rate")
    try:
        parse_fault(spec)
        return spec, float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fault_at(text: str) -> tuple[int, str]:
    index, spec = _pair(text, "at")
    try:
        parse_fault(spec)
        return int(index), spec
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 0 to 65535 (0 = any free)")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m perflab.calibration",
        description=(
            "Serve the Ollama API and the OpenAI API with scripted, known timings and "
            "injectable faults, to calibrate perflab's measurements. Point Ollama clients at "
            "it with OLLAMA_HOST, OpenAI clients at its /v1."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any)"
    )
    parser.add_argument("--config", type=Path, help="JSON or YAML file with TimingModel fields")
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="NAME",
        help="model name to serve (repeatable; default llama3.1:8b)",
    )
    d = TimingModel()
    add = parser.add_argument
    add("--load-time", type=float, metavar="S", help=f"cold load time, s ({d.load_time_s})")
    add(
        "--keep-alive",
        metavar="DUR",
        help=f"default keep-alive: seconds, '5m', or -1 for forever ({d.keep_alive_s:g})",
    )
    add("--ttft-fixed", type=float, metavar="S", help=f"fixed prefill time, s ({d.ttft_fixed_s})")
    add(
        "--ttft-per-token",
        type=float,
        metavar="S",
        help=f"prefill time per prompt token, s ({d.ttft_per_token_s})",
    )
    add("--itl", type=float, metavar="S", help=f"mean gap between output tokens, s ({d.itl_s})")
    add("--itl-sd", type=float, metavar="S", help="gap standard deviation, s (0 = fixed gaps)")
    add(
        "--output-tokens",
        type=int,
        metavar="N",
        help=f"tokens per response; a smaller num_predict wins ({d.output_tokens})",
    )
    add(
        "--num-parallel",
        type=int,
        metavar="N",
        help=f"requests served at once per model, like OLLAMA_NUM_PARALLEL ({d.num_parallel})",
    )
    add(
        "--max-queue",
        type=int,
        metavar="N",
        help=f"waiting requests before HTTP 503, like OLLAMA_MAX_QUEUE ({d.max_queue})",
    )
    add(
        "--prompt-cache",
        action="store_true",
        default=None,
        help="each slot keeps its last prompt; a shared prefix is not prefilled again",
    )
    add(
        "--tokens-per-chunk",
        type=int,
        metavar="N",
        help=f"OpenAI API: tokens per streamed event ({d.tokens_per_chunk})",
    )
    add(
        "--reasoning-tokens",
        type=int,
        metavar="N",
        help=f"the first N generated tokens are reasoning, as a thinking model's "
        f"({d.reasoning_tokens})",
    )
    add(
        "--reasoning-field",
        choices=("reasoning_content", "reasoning"),
        help=f"OpenAI API: the delta field reasoning tokens arrive in ({d.reasoning_field})",
    )
    add(
        "--tokens-per-word",
        type=float,
        metavar="X",
        help=f"prompt tokens per whitespace-separated word ({d.tokens_per_word})",
    )
    add("--seed", type=int, help=f"seed for gap and fault draws ({d.seed})")
    add(
        "--stall", type=float, metavar="S", help=f"default length of a stall fault, s ({d.stall_s})"
    )
    add(
        "--vram-share",
        type=float,
        metavar="F",
        help=f"share of a loaded model in GPU memory, as /api/ps reports it; below 1 a model "
        f"spilled to CPU memory, 0 all on the CPU ({d.vram_share:g})",
    )
    add(
        "--server-version",
        dest="version",
        metavar="V",
        help=f"what /api/version reports ({d.version})",
    )
    add(
        "--fault-rate",
        action="append",
        type=_fault_rate,
        default=[],
        metavar="SPEC=P",
        help="inject fault SPEC into a fraction P of requests (repeatable)",
    )
    add(
        "--fault-at",
        action="append",
        type=_fault_at,
        default=[],
        metavar="INDEX=SPEC",
        help="inject fault SPEC into generation request INDEX, counted from 0 (repeatable)",
    )
    add("--log-jsonl", type=Path, metavar="PATH", help="append one JSON line per request here")
    add("--quiet", action="store_true", help="print nothing per request")
    return parser


def load_config(path: Path) -> dict:
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("calibration"), dict):
        data = data["calibration"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of calibration settings")
    return data


def timing_from_args(args: argparse.Namespace) -> TimingModel:
    data = load_config(args.config) if args.config else {}
    if args.models:
        data["models"] = args.models
    for dest, name in _FLAG_FIELDS.items():
        value = getattr(args, dest)
        if value is not None:
            data[name] = value
    if args.fault_rate:
        data["fault_rates"] = {**dict(data.get("fault_rates") or {}), **dict(args.fault_rate)}
    if args.fault_at:
        data["fault_schedule"] = {**dict(data.get("fault_schedule") or {}), **dict(args.fault_at)}
    return TimingModel.from_dict(data)


def _describe(entry: RequestLog) -> str:
    parts = [
        f"#{entry.id} {entry.endpoint} {entry.model} {entry.outcome}",
        f"prompt={entry.prompt_tokens} out={entry.tokens_sent}/{entry.output_tokens}",
        f"load={entry.load_s:.3f}s queue={entry.queue_s:.3f}s",
        f"prefill={entry.prefill_s:.3f}s decode={entry.decode_s:.3f}s total={entry.total_s:.3f}s",
    ]
    if entry.cached_tokens:
        parts.append(f"cached={entry.cached_tokens}")
    if entry.fault:
        parts.append(f"fault={entry.fault}")
    return "  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        timing = timing_from_args(args)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))

    lock = threading.Lock()

    def on_request(entry: RequestLog) -> None:
        with lock:
            if not args.quiet:
                print(_describe(entry), flush=True)
            if args.log_jsonl:
                with open(args.log_jsonl, "a") as fh:
                    fh.write(json.dumps(entry.to_dict()) + "\n")

    server = CalibrationServer(timing, host=args.host, port=args.port, on_request=on_request)
    try:
        server.start()
    except (OSError, OverflowError) as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"perflab calibration server listening on {server.url}", flush=True)
    print(f"  use it with: OLLAMA_HOST={server.url}", flush=True)
    print(f"  or as an OpenAI-compatible server: {server.url}/v1", flush=True)
    print(f"  timing model: {json.dumps(timing.to_dict(), sort_keys=True)}", flush=True)
    print("  Ctrl-C to stop", flush=True)

    stopped = threading.Event()

    def on_signal(signum, frame) -> None:
        stopped.set()

    # Handle SIGINT explicitly too: a shell may start background jobs with it ignored.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopped.wait(0.5):
            if not server.running:  # a kill fault stopped it
                print("server stopped by a kill fault", flush=True)
                break
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    print("calibration server stopped", flush=True)
    return 0
