"""Checks a schema cannot express: each finds what would fail at run time and
says how to fix it, before any job starts.

Every check takes a config that passed the schema and yields ``Problem``s.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from perflab.config.problems import Problem
from perflab.config.sweep import EXPERIMENT_ID_PATTERN, Experiment, expand_experiments, suite_points
from perflab.config.targets import target_config
from perflab.engines.registry import engine_kind

# The tiny model's tokenizer, where the workflow keeps it (relative to the workflow directory).
DEFAULT_VOCAB = Path("cache/vocab/ggml-vocab-llama-bpe.gguf")
# BOS plus room for a short per-request prefix (prompt-cache busting).
CONTEXT_MARGIN_TOKENS = 16
HTTP_SCHEMES = ("http", "https")


def _leaves(value: object, path: tuple = ()) -> Iterator[tuple[tuple, object]]:
    """Every value below the mappings and lists of ``value``, with its key path."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _leaves(inner, (*path, index))
    else:
        yield path, value


def nonfinite_problems(value: object, path: tuple = ()) -> Iterator[Problem]:
    """NaN and infinities anywhere: the schema's minimum/maximum let NaN through."""
    for where, leaf in _leaves(value, path):
        if isinstance(leaf, float) and not math.isfinite(leaf):
            yield Problem(
                where, f"{leaf!r} is not a finite number; give a plain number such as 1.5"
            )


def blank_problems(value: object, path: tuple = ()) -> Iterator[Problem]:
    """Whitespace-only strings anywhere (prompts have their own message)."""
    for where, leaf in _leaves(value, path):
        if isinstance(leaf, str) and not leaf.strip() and where[:1] != ("prompts",):
            yield Problem(where, f"{leaf!r} is blank; give a value, or null where null is allowed")


def _referenced_prompts(config: dict) -> list[tuple[tuple, str]]:
    suites = config["suites"]
    refs = [(("suites", "basic", "prompts"), name) for name in suites["basic"]["prompts"]]
    refs += [
        (("suites", "prompt_length", "prompts"), name)
        for name in suites["prompt_length"]["prompts"]
    ]
    refs += [
        (("suites", suite, "prompt"), suites[suite]["prompt"])
        for suite in ("temperature", "concurrency", "resources", "kv_cache", "rate", "threads")
    ]
    return refs


def prompt_reference_problems(config: dict) -> Iterator[Problem]:
    known = ", ".join(sorted(config["prompts"]))
    for key, name in _referenced_prompts(config):
        if name not in config["prompts"]:
            yield Problem(key, f"prompt {name!r} is not defined under prompts (defined: {known})")


def expected_tps_problems(config: dict) -> Iterator[Problem]:
    low, high = config["expected_tps"]
    if low > high:
        yield Problem(
            ("expected_tps",), f"lower bound {low} is above upper bound {high}; write [low, high]"
        )


def calibration_problems(config: dict) -> Iterator[Problem]:
    if not engine_kind(config["engine"]["name"]).scripted:
        return
    from perflab.calibration import TimingModel

    try:
        TimingModel.from_dict(config["calibration"])
    except (ValueError, TypeError) as exc:
        yield Problem(("calibration",), str(exc))


def tiny_model_problems(config: dict) -> Iterator[Problem]:
    tiny = config["tiny_model"]
    for key, divisor in (("embedding_length", "head_count"), ("head_count", "head_count_kv")):
        if tiny[key] % tiny[divisor]:
            yield Problem(
                ("tiny_model", key),
                f"{tiny[key]} is not a multiple of tiny_model.{divisor} {tiny[divisor]}; "
                "change one of them",
            )


def rate_suite_problems(config: dict) -> Iterator[Problem]:
    rate = config["suites"]["rate"]
    if rate["arrival"] == "constant" and rate["burstiness"] != 1:
        yield Problem(
            ("suites", "rate", "burstiness"),
            f"{rate['burstiness']!r} applies to poisson arrivals only; set arrival: poisson "
            "(gamma gaps of this shape) or leave burstiness at 1",
        )


CROSS_FIELD_CHECKS = (
    prompt_reference_problems,
    rate_suite_problems,
    expected_tps_problems,
    calibration_problems,
    tiny_model_problems,
)


def cross_field_problems(config: dict) -> list[Problem]:
    """Keys that are valid alone but not together (checked after the schema)."""
    return [problem for check in CROSS_FIELD_CHECKS for problem in check(config)]


def prompt_problems(config: dict) -> Iterator[Problem]:
    for name, text in config["prompts"].items():
        if not text.strip():
            yield Problem(("prompts", name), "the prompt has no text; write the prompt's text")


def keep_alive_problems(config: dict) -> Iterator[Problem]:
    from perflab.calibration.model import parse_duration

    value = config["generation"]["keep_alive"]
    if value is None or isinstance(value, (int, float)):
        return
    try:
        parse_duration(value, strict=True)
    except ValueError:
        yield Problem(
            ("generation", "keep_alive"),
            f"{value!r} is not an Ollama duration; use a number of seconds or a duration "
            "such as 5m, 1h30m, 300ms, 0 (unload at once) or -1 (keep loaded)",
        )


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be an Ollama URL (read as the ollama client reads OLLAMA_HOST)."""
    text = host.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
    if scheme not in HTTP_SCHEMES:
        return f"scheme {scheme!r} is not http or https"
    split = urllib.parse.urlsplit(f"{scheme}://{rest}")
    try:
        port = split.port
    except ValueError:
        return "the port is not a number from 1 to 65535"
    if port is not None and not 1 <= port <= 65535:
        return "the port is not a number from 1 to 65535"
    if not split.hostname or any(c.isspace() for c in text):
        return "it names no host"
    return None


HOST_FIX = "write it as http://HOST:PORT, e.g. http://127.0.0.1:11434"


def host_problems(config: dict) -> Iterator[Problem]:
    engine = config["engine"]
    if engine["host"] is not None:
        reason = host_problem(engine["host"])
        if reason:
            yield Problem(("engine", "host"), f"{engine['host']!r}: {reason}; {HOST_FIX}")
        return
    variable = engine_kind(engine["name"]).host_env
    if variable and os.environ.get(variable):
        value = os.environ[variable]
        reason = host_problem(value)
        if reason:
            yield Problem(
                (variable,),
                f"{value!r}: {reason}; {HOST_FIX}, or set engine.host",
                origin="environment",
            )


def model_path_problems(config: dict) -> Iterator[Problem]:
    engine = config["engine"]
    if not engine_kind(engine["name"]).loads_model_file or not engine["model_path"]:
        return
    path = Path(engine["model_path"]).expanduser()
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        yield Problem(
            ("engine", "model_path"),
            f"{engine['model_path']!r} {what} (seen from {Path.cwd()}); give the path of a "
            "GGUF file, or null for the model engine.model names",
        )


def id_problems(config: dict) -> Iterator[Problem]:
    """Every experiment id must match the id pattern, name its exact values, and be unique."""
    seen: dict[str, tuple[str, Experiment]] = {}
    for suite, point in suite_points(config):
        experiment = Experiment(**point)
        key = ("suites", suite)
        unfit = list(_unfit_numbers(key, experiment))
        yield from unfit
        if not unfit and not re.fullmatch(EXPERIMENT_ID_PATTERN, experiment.id):
            yield Problem(key, f"gives the experiment id {experiment.id!r}, which is not valid")
        if unfit or not re.fullmatch(EXPERIMENT_ID_PATTERN, experiment.id):
            continue
        other = seen.setdefault(experiment.id, (suite, experiment))
        if other[1] != experiment:
            yield Problem(
                key,
                f"two different sweep points share the experiment id {experiment.id!r} "
                f"(also in suites.{other[0]}); make their values differ in the id",
            )


def _unfit_numbers(key: tuple, experiment) -> Iterator[Problem]:
    """Numbers the id would not spell exactly (``1e-05``; ``0.70000000001`` reads ``0.7``)."""
    for name in ("temperature", "duration_s", "rate", "burstiness"):
        value = getattr(experiment, name)
        text = None if value is None else f"{value:g}"
        if text is not None and (float(text) != value or "e" in text):
            yield Problem(
                key,
                f"{name} {value!r} does not fit an experiment id (it would read {text}); "
                "round it to at most 6 significant digits, without an exponent",
            )


def _token_count(texts: list[str], tokenizer: Path) -> list[int]:
    from llama_cpp import Llama
    from llama_cpp._utils import suppress_stdout_stderr

    from perflab.engines.llamacpp_engine import chat_formatter, prompt_tokens

    with suppress_stdout_stderr(disable=False):
        vocab = Llama(model_path=str(tokenizer), vocab_only=True, verbose=False)
    try:
        formatter = chat_formatter(vocab)  # what the engine evaluates: the chat-template form
        return [len(prompt_tokens(vocab, formatter, text)) for text in texts]
    finally:
        vocab.close()


def _tokenizer(config: dict) -> Path | None:
    """The GGUF whose tokenizer llama.cpp will use: ``model_path``, the Ollama
    store's blob of an Ollama model name (a PreflightError naming the fix when it
    is not there), the fetched SmolLM2 (None before it is fetched), else the tiny
    model's vocabulary."""
    from perflab.engines.ollama_store import resolve, uses_tiny_model
    from perflab.models.smollm2 import MODEL_PATH, uses_smollm2

    engine = config["engine"]
    if engine["model_path"]:
        path = Path(engine["model_path"]).expanduser()
    elif uses_smollm2(engine):
        path = MODEL_PATH
    elif uses_tiny_model(engine):
        path = DEFAULT_VOCAB
    else:
        path = resolve(engine["model"]).path
    return path if path.is_file() else None


def context_problems(config: dict) -> Iterator[Problem]:
    """llama.cpp fails every request whose prompt plus output exceeds n_ctx.

    A UTF-8 byte count bounds the token count of a byte-level BPE tokenizer
    from above, so it is checked first; the model's tokenizer (a vocab-only
    load, about a second) is consulted only when that bound does not fit.
    """
    engine = config["engine"]
    if not engine_kind(engine["name"]).loads_model_file:
        return
    prompts = sorted({e.prompt for e in expand_experiments(config).values()}, key=len)
    if not prompts:
        return
    n_ctx, max_tokens = engine["n_ctx"], config["generation"]["max_tokens"]
    room = n_ctx - max_tokens - CONTEXT_MARGIN_TOKENS
    longest = prompts[-1]
    bound = len(longest.encode()) + 1
    if bound <= room:
        return
    from perflab.engines.base import PreflightError

    try:
        tokenizer = _tokenizer(config)
    except PreflightError as missing:  # an Ollama model that is not pulled
        yield Problem(("engine", "model"), str(missing))
        return
    counted = max(_token_count(prompts, tokenizer)) if tokenizer else None
    if counted is not None and counted <= room:
        return
    how = f"{counted} tokens" if counted is not None else f"up to {bound} tokens (bytes + 1)"
    yield Problem(
        ("generation", "max_tokens"),
        f"{max_tokens} output tokens plus the longest prompt ({how}) and a margin of "
        f"{CONTEXT_MARGIN_TOKENS} exceed engine.n_ctx {n_ctx}; lower generation.max_tokens "
        "or raise engine.n_ctx",
    )


QUANTIZABLE = (
    "llamacpp with the model the workflow makes (engine.model tiny-llama3 or smollm2-135m, "
    "no model_path)"
)


def quantization_problems(config: dict) -> Iterator[Problem]:
    from perflab.engines.ollama_store import uses_tiny_model
    from perflab.models.smollm2 import uses_smollm2

    engine = config["engine"]
    if engine.get("quantization") and not (uses_tiny_model(engine) or uses_smollm2(engine)):
        yield Problem(
            ("engine", "quantization"),
            f"{engine['quantization']!r} applies only to {QUANTIZABLE}; remove it, or compare "
            "quantizations of another model as targets naming each file (model_path) or tag",
        )


SEMANTIC_CHECKS = (
    blank_problems,
    prompt_problems,
    keep_alive_problems,
    host_problems,
    model_path_problems,
    quantization_problems,
    id_problems,
)
ENGINE_CHECKS = (host_problems, model_path_problems, quantization_problems)


def semantic_problems(config: dict) -> list[Problem]:
    from perflab.config.launch_checks import launch_problems, peer_problems, threads_problems

    checks = (*SEMANTIC_CHECKS, launch_problems, peer_problems, threads_problems)
    problems = [problem for check in checks for problem in check(config)]
    problems += target_engine_problems(config, (*ENGINE_CHECKS, launch_problems))
    if not problems:  # needs valid prompts and ids
        problems += context_problems(config)
        problems += target_engine_problems(config, (context_problems,))
    return problems


def target_engine_problems(config: dict, checks=ENGINE_CHECKS) -> list[Problem]:
    """The engine checks for each target's engine, each problem under its target's key."""
    problems = []
    for index, entry in enumerate(config.get("targets") or ()):
        single = target_config(config, entry["name"])
        for check in checks:
            for problem in check(single):
                path = problem.path
                if path[:1] == ("engine",):
                    path = ("targets", index, *path)
                    problems.append(Problem(path, problem.message, problem.origin))
                else:
                    message = f"{problem.message} (target {entry['name']!r})"
                    problems.append(Problem(path, message, problem.origin))
    return problems
