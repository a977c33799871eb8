"""Load, validate and expand a perflab config into experiments."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"
SUITES = ("basic", "prompt_length", "temperature", "concurrency", "resources", "kv_cache")
PROMPT_CACHE_MODES = ("bust", "reuse")
EXPERIMENT_ID_PATTERN = r"[a-z0-9_]+-t[0-9.]+-w[0-9]+-(n[0-9]+|d[0-9.]+s)(-reuse)?-r[0-9]+"
# Keys that moved: the schema would only say "unexpected"; these say where they went.
MOVED_KEYS = {
    ("engine", "prompt_cache"): (
        "engine.prompt_cache was replaced by the top-level prompt_cache: bust | reuse, "
        "which every engine follows. Remove engine.prompt_cache and set prompt_cache: reuse "
        "(was true) or leave the default prompt_cache: bust (was false)"
    ),
}


class ConfigError(ValueError):
    """The config is invalid; the message names every wrong key and the fix."""


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _with_defaults(validator_class):
    """A validator that fills ``default`` values while it validates."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {}))) or "none"
        return f"{key}: {error.message}. Allowed keys here: {allowed}"
    if error.validator == "enum":
        allowed = ", ".join(map(repr, error.validator_value))
        return f"{key}: {error.instance!r} is not allowed; use one of {allowed}"
    hint = ""
    if error.validator == "type" and isinstance(error.instance, str):
        hint = " (values given with --config arrive as strings; put them in a config file)"
    return f"{key}: {error.message}{hint}"


def validate_config(config: dict, source: str = "config") -> dict:
    """Validate ``config`` in place, fill defaults, and return it.

    Raises ConfigError listing every problem, naming ``source``.
    """
    validator_class = _with_defaults(jsonschema.Draft7Validator)
    validator = validator_class(load_schema())
    moved = _moved_key_problems(config)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    problems = moved + [_describe(error) for error in errors if not _is_moved(error)]
    if not problems:
        problems = _cross_field_problems(config)
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(f"Invalid perflab config ({source}):\n{listing}")
    return config


def _moved_key_problems(config: dict) -> list[str]:
    problems = []
    for (section, key), fix in MOVED_KEYS.items():
        block = config.get(section)
        if isinstance(block, dict) and key in block:
            problems.append(f"{section}.{key}: {fix}")
    return problems


def _is_moved(error: jsonschema.ValidationError) -> bool:
    if error.validator != "additionalProperties" or len(error.absolute_path) != 1:
        return False
    section = error.absolute_path[0]
    unexpected = set(error.instance) - set(error.schema.get("properties", {}))
    return bool(unexpected) and all((section, key) in MOVED_KEYS for key in unexpected)


def _referenced_prompts(config: dict) -> list[tuple[str, str]]:
    suites = config["suites"]
    refs = [("suites.basic.prompts", name) for name in suites["basic"]["prompts"]]
    refs += [("suites.prompt_length.prompts", name) for name in suites["prompt_length"]["prompts"]]
    refs += [
        (f"suites.{suite}.prompt", suites[suite]["prompt"])
        for suite in ("temperature", "concurrency", "resources", "kv_cache")
    ]
    return refs


def _cross_field_problems(config: dict) -> list[str]:
    problems = []
    known = sorted(config["prompts"])
    for key, name in _referenced_prompts(config):
        if name not in config["prompts"]:
            problems.append(
                f"{key}: prompt {name!r} is not defined under prompts (defined: {', '.join(known)})"
            )
    low, high = config["expected_tps"]
    if low > high:
        problems.append(f"expected_tps: lower bound {low} is above upper bound {high}")
    problems += _calibration_problems(config)
    tiny = config["tiny_model"]
    if tiny["embedding_length"] % tiny["head_count"]:
        problems.append("tiny_model.embedding_length must be a multiple of tiny_model.head_count")
    if tiny["head_count"] % tiny["head_count_kv"]:
        problems.append("tiny_model.head_count must be a multiple of tiny_model.head_count_kv")
    return problems


def _calibration_problems(config: dict) -> list[str]:
    if config["engine"]["name"] != "calibration":
        return []
    from perflab.calibration import TimingModel

    try:
        TimingModel.from_dict(config["calibration"])
    except (ValueError, TypeError) as exc:
        return [f"calibration: {exc}"]
    return []


def merge_configs(base: dict, override: dict) -> dict:
    """Merge as Snakemake merges --configfile over configfile: dicts nest, the rest replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_configs(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_yaml(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text()) or {}


def load_config_file(
    path: str | Path, overrides: dict | None = None, base: str | Path | None = None
) -> dict:
    """Load ``path`` (merged over ``base`` when given), apply overrides, validate."""
    config = read_yaml(path)
    sources = [str(path)]
    if base is not None and Path(base).resolve() != Path(path).resolve():
        config = merge_configs(read_yaml(base), config)
        sources.insert(0, str(base))
    config = merge_configs(config, overrides or {})
    return validate_config(config, source=" + ".join(sources))


@dataclass(frozen=True)
class Experiment:
    """One trial of one sweep point: a prompt at a temperature with N workers.

    A condition (``condition_id``) is the sweep point; it runs as ``repeats``
    independent trials, each its own job with id ``<condition_id>-r<trial>``.
    """

    prompt_name: str
    prompt: str
    temperature: float
    workers: int
    requests: int | None = None
    duration_s: float | None = None
    prompt_cache: str = "bust"
    trial: int = 1
    suites: tuple[str, ...] = field(default=(), compare=False)

    @property
    def condition_id(self) -> str:
        size = f"n{self.requests}" if self.requests is not None else f"d{self.duration_s:g}s"
        reuse = "-reuse" if self.prompt_cache == "reuse" else ""
        return f"{self.prompt_name}-t{self.temperature:g}-w{self.workers}-{size}{reuse}"

    @property
    def id(self) -> str:
        return f"{self.condition_id}-r{self.trial}"

    def params(self) -> dict:
        return asdict(self) | {
            "id": self.id,
            "condition_id": self.condition_id,
            "suites": list(self.suites),
        }


def _suite_points(config: dict) -> list[tuple[str, dict]]:
    """(suite, point) for every sweep value of every enabled suite."""
    suites = config["suites"]
    sweeps = {
        # suite: (the axis it varies, its values, what it holds fixed)
        "basic": ("prompt_name", suites["basic"]["prompts"], ("workers", "requests")),
        "prompt_length": (
            "prompt_name",
            suites["prompt_length"]["prompts"],
            ("workers", "requests"),
        ),
        "temperature": (
            "temperature",
            suites["temperature"]["temperatures"],
            ("prompt", "workers", "requests"),
        ),
        "concurrency": ("workers", suites["concurrency"]["workers"], ("prompt", "requests")),
        "resources": (None, [None], ("prompt", "workers", "duration_s")),
        "kv_cache": ("prompt_cache", list(PROMPT_CACHE_MODES), ("prompt", "workers", "requests")),
    }
    points = []
    for suite, (axis, values, fixed) in sweeps.items():
        if not suites[suite]["enabled"]:
            continue
        held = {key: suites[suite][key] for key in fixed}
        if "prompt" in held:
            held["prompt_name"] = held.pop("prompt")
        points += [(suite, held | ({axis: value} if axis else {})) for value in values]
    for _, point in points:
        point["temperature"] = float(point.get("temperature", config["generation"]["temperature"]))
        point["prompt"] = config["prompts"][point["prompt_name"]]
        point.setdefault("prompt_cache", config["prompt_cache"])
    return points


def expand_conditions(config: dict) -> dict[str, Experiment]:
    """One trial-1 experiment per distinct sweep point; points shared by suites run once."""
    merged: dict[str, tuple[dict, list[str]]] = {}
    for suite, point in _suite_points(config):
        experiment = Experiment(**point)
        _, suites = merged.setdefault(experiment.condition_id, (point, []))
        if suite not in suites:
            suites.append(suite)
    return {
        condition_id: Experiment(**point, suites=tuple(suites))
        for condition_id, (point, suites) in merged.items()
    }


def expand_experiments(config: dict) -> dict[str, Experiment]:
    """Every trial of every condition, keyed by experiment id: all first trials, then
    all second trials, and so on (the order the workflow runs them in)."""
    conditions = expand_conditions(config).values()
    return {
        experiment.id: experiment
        for trial in range(1, config["repeats"] + 1)
        for experiment in (replace(condition, trial=trial) for condition in conditions)
    }


def suite_members(experiments: dict[str, Experiment]) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {suite: [] for suite in SUITES}
    for experiment in experiments.values():
        for suite in experiment.suites:
            members[suite].append(experiment.id)
    return members
