"""Several engine targets in one run: each suite against each target.

A config without ``targets`` has one target, its ``engine``, and its
experiment ids and paths stay as they were. With ``targets``, every
experiment belongs to one target: its id starts with ``<target>--`` and its
spec carries that target's engine (and calibration timings), so the
experiments of one target never disturb, or rerun, another's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from perflab.config.problems import Problem

SEPARATOR = "--"
DEFAULT_MACHINE = "local"


@dataclass(frozen=True)
class Target:
    """One engine to measure: its short name, and the machine whose CPU or GPU it uses."""

    name: str
    machine: str = DEFAULT_MACHINE


def targets(config: dict) -> tuple[Target, ...]:
    """The config's targets in order; empty for a single-target config."""
    return tuple(
        Target(entry["name"], entry.get("machine", DEFAULT_MACHINE))
        for entry in config.get("targets") or ()
    )


def target_names(config: dict) -> tuple[str, ...]:
    return tuple(target.name for target in targets(config))


def baseline(config: dict) -> str | None:
    """The target the others are compared with: ``baseline``, else the first."""
    names = target_names(config)
    if not names:
        return None
    return config.get("baseline") or names[0]


def _entry(config: dict, name: str) -> dict:
    for entry in config.get("targets") or ():
        if entry["name"] == name:
            return entry
    raise KeyError(f"no target named {name!r} (targets: {', '.join(target_names(config))})")


def target_config(config: dict, name: str | None) -> dict:
    """``config`` as the one-target config of target ``name`` (``config`` itself for None).

    The target's engine block replaces ``engine`` (it is complete: unset keys
    took the schema's defaults); its ``calibration`` keys are merged over the
    top-level ``calibration``.
    """
    if name is None:
        return config
    entry = _entry(config, name)
    single = {key: value for key, value in config.items() if key not in ("targets", "baseline")}
    single["engine"] = copy.deepcopy(entry["engine"])
    single["calibration"] = copy.deepcopy(config.get("calibration") or {}) | copy.deepcopy(
        entry.get("calibration") or {}
    )
    return single


def machine_of(config: dict, name: str | None) -> str | None:
    if name is None:
        return None
    return _entry(config, name).get("machine", DEFAULT_MACHINE)


def target_problems(config: dict) -> list[Problem]:
    """Duplicate names, an unknown baseline, and a baseline without targets."""
    problems = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(config.get("targets") or ()):
        name = entry["name"]
        if name in seen:
            problems.append(
                Problem(
                    ("targets", index, "name"),
                    f"{name!r} is also the name of targets[{seen[name]}]; give every target "
                    "its own name",
                )
            )
        seen.setdefault(name, index)
    chosen = config.get("baseline")
    if chosen is not None and chosen not in seen:
        known = ", ".join(seen) or "none: the config has no targets"
        problems.append(
            Problem(("baseline",), f"{chosen!r} is not a target's name (targets: {known})")
        )
    return problems
