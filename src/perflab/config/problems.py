"""What is wrong with a config: one ``Problem`` per wrong key, with its fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where (``path``, key parts), what, and the fix."""

    path: tuple[str | int, ...]
    message: str
    origin: str | None = None  # where the value came from when it is not a config file

    @property
    def key(self) -> str:
        return key_text(self.path)


def key_text(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"
