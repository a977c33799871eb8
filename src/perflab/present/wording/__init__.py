"""Every sentence of the log: findings in, words out.

No judgement here, only the verdicts and figures the findings computed put
into words; the template (``perflab/present/templates/day1-log.md.j2``) arranges them.
"""

from perflab.present.wording.answers import (
    breakdown,
    expectations,
    kv_cache,
    prompt_length,
    temperature,
)
from perflab.present.wording.bottleneck import (
    LOG_OPTIONS,
    NOTES,
    bottleneck_evidence,
    bottleneck_sentence,
    check_text,
    disturbed_caveat,
)
from perflab.present.wording.capacity import capacity, open_loop_note, rate_line, slo_text
from perflab.present.wording.capacity import comparison_lines as capacity_comparison
from perflab.present.wording.concurrency import concurrency
from perflab.present.wording.gpu import gpu
from perflab.present.wording.kv_memory import kv_memory
from perflab.present.wording.numbers import (
    NA,
    ci_note,
    duration,
    failures,
    measured,
    metric_num,
    metric_spread,
    num,
    spread_text,
    workers_text,
)
from perflab.present.wording.peer import peer
from perflab.present.wording.placement import placement
from perflab.present.wording.roofline import roofline
from perflab.present.wording.run import (
    IssueRow,
    answer_lengths,
    checklist,
    cold_start,
    disturbed_lines,
    idea,
    interference_summary,
    issues_encountered,
    key_findings,
    rerun_command,
    rerun_disturbed,
    setup_notes,
    solutions,
    status,
    storage,
    technical_issues,
    total_time,
    trials_note,
)

__all__ = [
    "gpu",
    "kv_memory",
    "peer",
    "placement",
    "roofline",
    "LOG_OPTIONS",
    "NA",
    "NOTES",
    "failures",
    "IssueRow",
    "answer_lengths",
    "bottleneck_evidence",
    "bottleneck_sentence",
    "breakdown",
    "capacity",
    "capacity_comparison",
    "check_text",
    "ci_note",
    "checklist",
    "concurrency",
    "disturbed_caveat",
    "disturbed_lines",
    "duration",
    "expectations",
    "idea",
    "interference_summary",
    "key_findings",
    "kv_cache",
    "measured",
    "metric_num",
    "metric_spread",
    "num",
    "open_loop_note",
    "prompt_length",
    "rate_line",
    "rerun_command",
    "setup_notes",
    "slo_text",
    "cold_start",
    "solutions",
    "issues_encountered",
    "rerun_disturbed",
    "spread_text",
    "status",
    "storage",
    "technical_issues",
    "temperature",
    "total_time",
    "trials_note",
    "workers_text",
]
