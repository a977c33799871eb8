"""Every sentence of the log: findings in, words out.

No judgement here, only the verdicts and figures the findings computed put
into words; the template (``perflab/present/templates/day1-log.md.j2``) arranges them.
"""

from perflab.present.wording.answers import (
    breakdown,
    concurrency,
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
from perflab.present.wording.numbers import (
    NA,
    ci_note,
    duration,
    measured,
    num,
    spread_text,
    workers_text,
)
from perflab.present.wording.run import (
    IssueRow,
    answer_lengths,
    checklist,
    disturbed_lines,
    idea,
    interference_summary,
    key_findings,
    rerun_command,
    setup_notes,
    solutions,
    status,
    storage,
    technical_issues,
    total_time,
    trials_note,
)

__all__ = [
    "LOG_OPTIONS",
    "NA",
    "NOTES",
    "IssueRow",
    "answer_lengths",
    "bottleneck_evidence",
    "bottleneck_sentence",
    "breakdown",
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
    "num",
    "prompt_length",
    "rerun_command",
    "setup_notes",
    "solutions",
    "spread_text",
    "status",
    "storage",
    "technical_issues",
    "temperature",
    "total_time",
    "trials_note",
    "workers_text",
]
