"""The threads suite in words: a row per thread count, the best count and its
verdict, and llama-bench's best count beside it."""

from __future__ import annotations

from dataclasses import dataclass

from perflab.analyse.findings.statistics import Spread
from perflab.analyse.findings.threads import Agreement, ThreadPoint, ThreadsFinding
from perflab.measure.peer import PeerTest
from perflab.present.wording.numbers import NA, num
from perflab.present.wording.verdicts import outcome_text, power_text, statistics, times


@dataclass(frozen=True)
class ThreadsRow:
    """One row of the log's threads table, every cell already in words."""

    threads: int
    decode: str
    output_tokens: str
    prefill: str
    n: str
    peer_tg: str
    peer_pp: str


def _rate(s: Spread) -> str:
    """'81.2 ± 3.1' (95 % CI over trials, or over requests with one trial)."""
    if s.mean is None:
        return NA
    return f"{s.mean:,.1f} ± {s.ci95:,.1f}" if s.ci95 is not None else f"{s.mean:,.1f}"


def _peer(test: PeerTest | None) -> str:
    if test is None:
        return NA
    size = f"{test.label}: {test.n_tokens} tokens"  # the length it was measured over
    if test.repetitions > 1:
        return f"{test.tps_mean:,.1f} ± {test.tps_ci95:,.1f} ({size}, n={test.repetitions})"
    return f"{test.tps_mean:,.1f} ({size}, n=1)"


def _row(point: ThreadPoint) -> ThreadsRow:
    c = point.condition
    trials = f"{c.trials} trial{'s' if c.trials != 1 else ''}"
    return ThreadsRow(
        threads=point.threads,
        decode=_rate(point.decode),
        output_tokens=num(c.output_tokens_mean, 1),
        prefill=_rate(point.prefill),
        n=f"{c.n_ok} requests, {trials}",
        peer_tg=_peer(point.peer_tg),
        peer_pp=_peer(point.peer_pp),
    )


def rows(f: ThreadsFinding) -> list[ThreadsRow]:
    return [_row(point) for point in f.points]


def _threads(count: int | None) -> str:
    return f"{count} thread{'s' if count != 1 else ''}"


def best_line(f: ThreadsFinding) -> str:
    if f.best is None:
        return "No thread count had a successful request."
    if f.test is None:
        return f"Fastest decode at {_threads(f.best)} (only one count measured)."
    power = ""
    if f.test.power is not None:
        power = f"; power {f.test.power:.0%} against a ±{f.test.threshold:.0%} change"
    return (
        f"Fastest decode at {_threads(f.best)}, against the next fastest "
        f"({_threads(f.runner_up)}): {statistics(f.test)}, {outcome_text(f.test)}{power}."
        f" Fastest prefill at {_threads(f.prefill_best)}."
    )


AGREEMENT = {
    Agreement.SAME: "the same count",
    Agreement.WITHIN_NOISE: "a different count, but within noise",
    Agreement.DISAGREE: "a different count, and both sides tell the two apart",
}


def _repetitions(v) -> str:
    """llama-bench's Welch test over its repetitions, which are not trials."""
    if v.estimate is None or v.low is None:
        return "no spread over its repetitions"
    return (
        f"{times(v.estimate)} (95 % CI {times(v.low)}–{times(v.high)}; Welch over "
        f"{v.n_trials} repetitions each; {power_text(v)})"
    )


def peer_line(f: ThreadsFinding) -> str | None:
    if f.agreement is None:
        return None
    text = f"llama-bench's fastest tg is at {_threads(f.peer_best)}: {AGREEMENT[f.agreement]}"
    details = []
    if f.ours_at_peer_best is not None:
        details.append(
            f"perflab's decode at {_threads(f.best)} over {_threads(f.peer_best)}: "
            f"{statistics(f.ours_at_peer_best)}, {outcome_text(f.ours_at_peer_best)}"
        )
    if f.peer_at_ours is not None:
        details.append(
            f"llama-bench's tg at {_threads(f.peer_best)} over {_threads(f.best)}: "
            f"{_repetitions(f.peer_at_ours)}, {outcome_text(f.peer_at_ours)}"
        )
    return text + (f" ({'; '.join(details)})" if details else "") + "."


def lines(f: ThreadsFinding) -> list[str]:
    """The best count, then llama-bench's, then what the two measure differently."""
    found = [best_line(f)]
    peer = peer_line(f)
    if peer:
        found.append(peer)
        found.append(
            "llama-bench's tg decodes a fixed token after an empty prompt and samples "
            "nothing; a served request also applies the chat template and samples every "
            "token, so its rates can sit below llama-bench's; the fastest counts are what "
            "should agree."
        )
    return found
