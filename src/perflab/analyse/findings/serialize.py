"""Findings to JSON and back, through the dataclasses' own type hints."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from enum import Enum
from pathlib import Path


def to_jsonable(value):
    if dataclasses.is_dataclass(value):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _build(kind, value):
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        for option in options:
            if isinstance(option, type) and issubclass(option, Enum):
                try:
                    return option(value)
                except ValueError:
                    continue
            elif dataclasses.is_dataclass(option) and isinstance(value, dict):
                return _build(option, value)
        return value
    if origin is tuple:
        item = typing.get_args(kind)[0]
        return tuple(_build(item, v) for v in value)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(value)
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        # a key an older findings.json lacks takes the field's default where it has one
        return kind(
            **{
                f.name: _build(hints[f.name], value.get(f.name))
                for f in dataclasses.fields(kind)
                if f.name in value or f.default is dataclasses.MISSING
            }
        )
    return value


def from_jsonable(kind, data):
    """An instance of the dataclass ``kind`` from ``to_jsonable`` output."""
    return _build(kind, data)


def dumps(findings) -> str:
    return json.dumps(to_jsonable(findings), indent=1, sort_keys=False, allow_nan=False)


def load(kind, path: str | Path):
    return from_jsonable(kind, json.loads(Path(path).read_text()))
