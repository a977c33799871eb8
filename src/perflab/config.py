"""Load, validate and expand a perflab config into experiments."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # jsonschema and yaml cost ~0.15 s to import; experiment jobs need neither
    import jsonschema

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"
SUITES = ("basic", "prompt_length", "temperature", "concurrency", "resources")
EXPERIMENT_ID_PATTERN = r"[a-z0-9_]+-t[0-9.]+-w[0-9]+-(n[0-9]+|d[0-9.]+s)"


class ConfigError(ValueError):
    """The config is invalid; the message names every wrong key and the fix."""


def load_schema() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def _with_defaults(validator_class):
    """A validator that fills ``default`` values while it validates."""
    import jsonschema

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
    import jsonschema

    validator_class = _with_defaults(jsonschema.Draft7Validator)
    validator = validator_class(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    problems = [_describe(error) for error in errors]
    if not problems:
        problems = _cross_field_problems(config)
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(f"Invalid perflab config ({source}):\n{listing}")
    return config


def _referenced_prompts(config: dict) -> list[tuple[str, str]]:
    suites = config["suites"]
    refs = [("suites.basic.prompts", name) for name in suites["basic"]["prompts"]]
    refs += [("suites.prompt_length.prompts", name) for name in suites["prompt_length"]["prompts"]]
    refs += [
        (f"suites.{suite}.prompt", suites[suite]["prompt"])
        for suite in ("temperature", "concurrency", "resources")
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
    import yaml

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
    """One sweep point: a prompt at a temperature with N workers."""

    prompt_name: str
    prompt: str
    temperature: float
    workers: int
    requests: int | None = None
    duration_s: float | None = None
    suites: tuple[str, ...] = field(default=(), compare=False)

    @property
    def id(self) -> str:
        size = f"n{self.requests}" if self.requests is not None else f"d{self.duration_s:g}s"
        return f"{self.prompt_name}-t{self.temperature:g}-w{self.workers}-{size}"

    def params(self) -> dict:
        return asdict(self) | {"id": self.id, "suites": list(self.suites)}


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
    return points


def expand_experiments(config: dict) -> dict[str, Experiment]:
    """One experiment per distinct sweep point; points shared by suites run once."""
    merged: dict[str, tuple[dict, list[str]]] = {}
    for suite, point in _suite_points(config):
        experiment = Experiment(**point)
        params, suites = merged.setdefault(experiment.id, (point, []))
        if suite not in suites:
            suites.append(suite)
    return {
        experiment_id: Experiment(**point, suites=tuple(suites))
        for experiment_id, (point, suites) in merged.items()
    }


def suite_members(experiments: dict[str, Experiment]) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {suite: [] for suite in SUITES}
    for experiment in experiments.values():
        for suite in experiment.suites:
            members[suite].append(experiment.id)
    return members
