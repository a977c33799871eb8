"""A model split between GPU and CPU memory, in words: the log's and every Ollama
experiment job's own log line. Apart from ``perflab.present.wording``, whose package
loads every finding (and scipy): the job would pay ~0.7 s to import it."""

from __future__ import annotations


def share_text(share: float) -> str:
    """A share of the model, 0 to 1, as the log and the job's log print it: '60 %'."""
    return f"{share * 100:.0f} %"


def spilled_text(cpu_share: float) -> str:
    """What a spill means, in the log and in the job's log alike."""
    return (
        f"spilled: {share_text(cpu_share)} of the model in CPU memory, expect decode at CPU speed"
    )
