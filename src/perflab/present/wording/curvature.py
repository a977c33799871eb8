"""What the prompt-length fit's curvature tests showed, in the words of what was tested:
no curvature detected is said as such, with the test's power; "linear" only where an
equivalence test showed the line straight."""

from __future__ import annotations

from perflab.analyse.findings.prompt_length import (
    BEND_SHARE,
    PromptLengthFinding,
    PromptLengthVerdict,
)

GROWING = (PromptLengthVerdict.LINEAR, PromptLengthVerdict.GROWS, PromptLengthVerdict.SUPERLINEAR)


def curvature_words(f: PromptLengthFinding) -> str:
    """'; no curvature detected (F-test p = 0.430, power 0.35 against a bend of 10 % of
    the rise)', or the equivalence it showed; '' when TTFT does not grow."""
    straight = f.straightness
    if f.verdict not in GROWING:
        return ""
    if straight is None:
        return "; curvature not tested (too few observations beside the line and its blocks)"
    bend = f"a bend of {BEND_SHARE:.0%} of the rise"
    if f.verdict == PromptLengthVerdict.SUPERLINEAR:
        return f"; curvature F-test p = {straight.p_curvature:.3f}: it bends upwards"
    if f.verdict == PromptLengthVerdict.LINEAR:
        return (
            f"; straight within {bend} (equivalence test p = {straight.p_equivalence:.3f}; "
            f"curvature F-test p = {straight.p_curvature:.3f})"
        )
    return (
        f"; no curvature detected (F-test p = {straight.p_curvature:.3f}, power "
        f"{straight.power:.2f} against {bend}), which does not show it straight"
    )
