"""Load and validate a perflab config: read its files, merge them, check every key."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # jsonschema and yaml cost ~0.15 s to import; experiment jobs need neither
    import jsonschema

from perflab.config.checks import (
    calibration_problems,
    cross_field_problems,
    nonfinite_problems,
    semantic_problems,
)
from perflab.config.problems import Problem
from perflab.config.targets import target_config, target_problems

SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "config.schema.yaml"
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
    import yaml

    # libyaml's loader, where PyYAML has it: the pure-Python one took ~0.3 s of every
    # Snakemake start for the schema alone
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(SCHEMA_PATH.read_text(), Loader=loader)


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


def _describe(error: jsonschema.ValidationError) -> Problem:
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {}))) or "none"
        return Problem(path, f"{error.message}. Allowed keys here: {allowed}")
    if error.validator == "enum":
        allowed = ", ".join(map(repr, error.validator_value))
        return Problem(path, f"{error.instance!r} is not allowed; use one of {allowed}")
    hint = ""
    if error.validator == "type" and isinstance(error.instance, str):
        hint = " (values given with --config arrive as strings; put them in a config file)"
    if "x-fix" in error.schema:
        hint = f"; {error.schema['x-fix']}"
    return Problem(path, f"{error.message}{hint}")


def config_problems(config: dict) -> list[Problem]:
    """Every problem with ``config``; fills schema defaults in place as it goes."""
    import jsonschema

    validator_class = _with_defaults(jsonschema.Draft7Validator)
    validator = validator_class(load_schema())
    moved = _moved_key_problems(config)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = list(nonfinite_problems(config)) + moved
    problems += [_describe(error) for error in errors if not _is_moved(error)]
    if not problems:
        problems = cross_field_problems(config)
        problems += _target_cross_problems(config)
    if not problems:
        problems = semantic_problems(config)
    return problems


def _origin(problem: Problem, layers: Sequence[tuple[str, dict]]) -> str | None:
    """The last file that sets the problem's key (or the nearest key above it)."""
    if problem.origin:
        return problem.origin
    for depth in range(len(problem.path), 0, -1):
        for name, layer in reversed(layers):
            if _has_path(layer, problem.path[:depth]):
                return name
    return None


def _has_path(data: object, path: tuple) -> bool:
    for part in path:
        found = part in data if isinstance(data, dict) else _is_index(data, part)
        if not found:
            return False
        data = data[part]
    return True


def _is_index(data: object, part: object) -> bool:
    return isinstance(data, list) and isinstance(part, int) and part < len(data)


def format_problems(
    problems: list[Problem], source: str, layers: Sequence[tuple[str, dict]] = ()
) -> str:
    lines = []
    for problem in problems:
        origin = _origin(problem, layers)
        where = f"{origin}: " if origin else ""
        key = f"{problem.key}: " if problem.path else ""
        lines.append(f"  - {where}{key}{problem.message}")
    return f"Invalid perflab config ({source}):\n" + "\n".join(lines)


def validate_config(
    config: dict, source: str = "config", layers: Sequence[tuple[str, dict]] = ()
) -> dict:
    """Validate ``config`` in place, fill defaults, and return it.

    Raises ConfigError listing every problem, each with the file that set it
    (from ``layers``, the files in merge order) and the key.
    """
    problems = config_problems(config)
    if problems:
        raise ConfigError(format_problems(problems, source, layers))
    return config


def _moved_key_problems(config: dict) -> list[Problem]:
    problems = []
    for (section, key), fix in MOVED_KEYS.items():
        block = config.get(section)
        if isinstance(block, dict) and key in block:
            problems.append(Problem((section, key), fix))
    return problems


def _is_moved(error: jsonschema.ValidationError) -> bool:
    if error.validator != "additionalProperties" or len(error.absolute_path) != 1:
        return False
    section = error.absolute_path[0]
    unexpected = set(error.instance) - set(error.schema.get("properties", {}))
    return bool(unexpected) and all((section, key) in MOVED_KEYS for key in unexpected)


def _target_cross_problems(config: dict) -> list[Problem]:
    problems = target_problems(config)
    if problems:
        return problems
    for index, entry in enumerate(config["targets"]):
        single = target_config(config, entry["name"])
        problems += [
            Problem(("targets", index, "calibration"), problem.message)
            for problem in calibration_problems(single)
        ]
    return problems


def merge_configs(base: dict, override: dict) -> dict:
    """Merge as Snakemake merges --configfile over configfile: dicts nest, the rest replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_configs(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


DEFAULT_CONFIG = Path("config/config.yaml")


def user_config_files(configfiles: Sequence[str | Path], workdir: str | Path = ".") -> list[str]:
    """The ``--configfile`` files of a run, as a command line takes them again.

    ``config/config.yaml`` is left out (the Snakefile always reads it first, so
    naming it again would merge the defaults over the user's files); a file
    below ``workdir`` is given relative to it."""
    root = Path(workdir).resolve()
    default = (root / DEFAULT_CONFIG).resolve()
    files = []
    for name in configfiles:
        path = (root / name).resolve()
        if path != default:
            files.append(str(path.relative_to(root)) if path.is_relative_to(root) else str(path))
    return list(dict.fromkeys(files))


def read_yaml(path: str | Path) -> dict:
    """A config file's mapping; ConfigError naming the file (and line) for anything else."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; give a YAML config file") from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{path}{where}: not valid YAML ({what}); fix the syntax there "
            "(indent with spaces, quote values containing ': ')"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level is a {type(data).__name__}, not a mapping of keys; "
            "write keys such as `run: my-run` at the top level"
        )
    return data


def load_config_files(paths: Sequence[str | Path], overrides: dict | None = None) -> dict:
    """Merge ``paths`` in order (as ``snakemake --configfile A B``), apply overrides, validate."""
    layers = [(str(path), read_yaml(path)) for path in paths]
    config: dict = {}
    for _, layer in layers:
        config = merge_configs(config, layer)
    config = merge_configs(config, overrides or {})
    return validate_config(config, source=" + ".join(name for name, _ in layers), layers=layers)


def load_config_file(
    path: str | Path, overrides: dict | None = None, base: str | Path | None = None
) -> dict:
    """Load ``path`` (merged over ``base`` when given), apply overrides, validate."""
    paths = [path]
    if base is not None and Path(base).resolve() != Path(path).resolve():
        paths.insert(0, base)
    return load_config_files(paths, overrides)
