"""What each declaration of an experiment job costs Snakemake's planning.

`pipeline_scale.py` compares perflab's dry run with a bare Snakefile and one
shaped like perflab's jobs (as many outputs and a log). This script explains
the gap between perflab and the shaped floor: in temporary copies of the
workflow, at one sweep size, it removes one declaration of ``run_experiment``
at a time and times the dry run of each copy, alternating with perflab as it
is and with the shaped floor:

- ``no-conda``: its ``conda:`` environment;
- ``no-priority``: its ``priority:`` function (the design's run order);
- ``no-resources``: its ``llm_server`` resource (one benchmark at a time);
- ``no-anchor``: its target's anchor file as an input (the Slurm job group);
- ``short-shell``: its seven-field shell command cut to its two ``{log}`` fields (the
  dry run formats the command three times a job);
- ``skeleton``: all of the above and its input and parameter functions too:
  six outputs, a log and a two-field command, as the shaped floor has, inside
  perflab's Snakefile — what the rest of the workflow (its other rules, its
  config check, the sweep's YAML) costs on its own.

None of the copies is a workflow that measures correctly; each exists to put
a price on one declaration. It prints the median CPU seconds of each
Snakemake process (user + system) and its ratio to perflab and to the shaped
floor. Run by hand:

    python bench/job_declarations.py [--experiments 1000] [--repeats 5]

Quote ratios from one run; these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_scale import bare_workdir, experiment_shape, perflab_workdir, snakemake  # noqa: E402

RULE = "rule run_experiment:"
CONDA = '    conda:\n        "../../environment.yml"\n'
PRIORITY = "    priority: get_experiment_priority\n"
RESOURCES = "    resources:\n        llm_server=1,\n"
SHELL = (
    '        "python -m perflab run-experiment --spec {params.spec:q} {params.args}"\n'
    "        ' --out-dir \"$(dirname {output.records:q})\" --failed-dir {params.failed_dir}'\n"
    '        " --preflight {params.preflight} 2> {log}"\n'
)
SHORT_SHELL = '        "python -m perflab run-experiment 2> {log}"\n'
INPUT = "    input:\n        unpack(get_experiment_inputs),\n"
PARAMS = (
    "        spec=get_experiment_spec,\n"
    "        preflight=get_experiment_preflight_param(),\n"
    '        failed_dir=f"{RESULTS}/failed",\n'
    "        args=get_experiment_args,\n"
)
ANCHOR = '        "anchor": get_target_anchor_of(experiment.target),\n'

# variant: (edits of run_experiment in benchmark.smk, edits of experiment_jobs.smk)
VARIANTS = {
    "no-conda": ([(CONDA, "")], []),
    "no-priority": ([(PRIORITY, "")], []),
    "no-resources": ([(RESOURCES, "")], []),
    "no-anchor": ([], [(ANCHOR, "")]),
    "short-shell": ([(SHELL, SHORT_SHELL)], []),
    "skeleton": (
        [
            (CONDA, ""),
            (PRIORITY, ""),
            (RESOURCES, ""),
            (SHELL, SHORT_SHELL),
            (INPUT, ""),
            (PARAMS, '        failed_dir=f"{RESULTS}/failed",\n'),
        ],
        [],
    ),
}


def replaced(text: str, edits: list[tuple[str, str]], after: str = "") -> str:
    """``text`` with each edit made after ``after``; an edit that finds nothing is an
    error, so a changed rule stops the script instead of measuring an unchanged copy."""
    start = text.index(after) if after else 0
    head, tail = text[:start], text[start:]
    for old, new in edits:
        if old not in tail:
            raise SystemExit(f"bench/job_declarations.py: no {old.strip()!r} to remove")
        tail = tail.replace(old, new, 1)
    return head + tail


def variant_workdir(root: Path, experiments: int, name: str) -> tuple[Path, list[str]]:
    base = root / name
    base.mkdir()
    workdir, args = perflab_workdir(base, experiments)
    rule_edits, job_edits = VARIANTS[name]
    rules = workdir / "workflow" / "rules"
    benchmark = rules / "benchmark.smk"
    benchmark.write_text(replaced(benchmark.read_text(), rule_edits, RULE))
    jobs = rules / "experiment_jobs.smk"
    jobs.write_text(replaced(jobs.read_text(), job_edits))
    return workdir, args


def setups_for(root: Path, experiments: int) -> dict:
    outputs, gathered = experiment_shape()
    (root / "perflab").mkdir()
    setups = {"perflab": perflab_workdir(root / "perflab", experiments)}
    setups |= {name: variant_workdir(root, experiments, name) for name in VARIANTS}
    setups["shaped"] = bare_workdir(root, experiments, "shaped", outputs, gathered)
    return setups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="perflab-declarations-"))
    try:
        setups = setups_for(root, args.experiments)
        cpu = {name: [] for name in setups}
        for _ in range(args.repeats):
            for name, (workdir, extra) in setups.items():  # alternate: drift hits all alike
                cpu[name].append(snakemake(workdir, ["-n", *extra])[1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in cpu.items()}
    print(
        f"dry run of {args.experiments} experiments, {args.repeats} runs each, alternating; "
        "median CPU seconds of the Snakemake process"
    )
    for name, seconds in medians.items():
        saved = medians["perflab"] - seconds
        print(
            f"  {name:16} {seconds:6.2f} s  min {min(cpu[name]):6.2f} s  "
            f"{seconds / medians['perflab']:.2f}x perflab ({saved:+.2f} s saved)  "
            f"{seconds / medians['shaped']:.2f}x shaped"
        )


if __name__ == "__main__":
    main()
