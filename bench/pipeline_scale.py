"""How cheap is it to plan and re-plan a big sweep? perflab's workflow against a bare Snakefile.

Builds a sweep of N experiments (the temperature suite with N values on the
calibration engine) in a temporary copy of the workflow, a bare Snakefile
with N one-file jobs gathered by one rule — the least any N-experiment sweep
can ask of Snakemake — and the same bare Snakefile shaped like perflab's
experiment jobs (as many outputs and a log per job, as many files per
experiment gathered), which separates what the number of files costs from
what perflab's rules add. For each it times, in this one run, alternating:

- the dry run of the fresh sweep (nothing measured yet: every job planned);
- the no-op rerun once every output exists and Snakemake has recorded it
  (outputs are made as empty files and recorded with ``--touch``, so nothing
  is measured; the check Snakemake does is the same).

It prints min/median/max wall seconds and the CPU seconds of the Snakemake
process, and the median ratio perflab / bare. Run by hand:

    python bench/pipeline_scale.py [--experiments 1000] [--repeats 3]

Quote ratios from one run; these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "profiles", "environment.yml")
TARGET_RATIO = 1.5

# outputs: files per experiment job; gathered: of those, how many the gathering rule reads
BARE_SNAKEFILE = """\
N = int(config["experiments"])
OUTPUTS = int(config["outputs"])
GATHERED = int(config["gathered"])
LOG = "logs/{i}.log" if config["log"] else []


rule all:
    input:
        "gathered.txt",


rule experiment:
    output:
        [f"out/{{i}}/f{k}.txt" for k in range(OUTPUTS)],
    log:
        LOG,
    shell:
        "touch {output}"


rule gather:
    input:
        [expand(f"out/{{i}}/f{k}.txt", i=range(N)) for k in range(GATHERED)],
    output:
        "gathered.txt",
    shell:
        "cat {input} > {output}"
"""

# --touch sleeps 0.1 s per job before it touches; the bench only needs the record
TOUCH = (
    "import sys; import snakemake.executors.touch as touch; touch.Executor.SLEEPING_TIME = 0;"
    "from snakemake.cli import main; sys.argv[0] = 'snakemake'; main()"
)


def sweep_config(experiments: int) -> dict:
    off = {"enabled": False}
    temperatures = [round(1.5 * i / experiments, 6) for i in range(experiments)]
    return {
        "run": "bench-scale",
        "engine": {"name": "calibration", "model": "llama3.1:8b"},
        "suites": {
            "basic": off,
            "prompt_length": off,
            "concurrency": off,
            "resources": off,
            "kv_cache": off,
            "temperature": {"temperatures": temperatures, "requests": 1},
        },
    }


def perflab_workdir(root: Path, experiments: int) -> tuple[Path, list[str]]:
    workdir = root / "perflab"
    workdir.mkdir()
    for name in WORKFLOW_FILES:
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, workdir / name)
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(sweep_config(experiments)))
    return workdir, ["--configfile", "sweep.yaml"]


def experiment_shape() -> tuple[int, int]:
    """Files one run_experiment job declares, and how many of them aggregate gathers."""
    benchmark = (ROOT / "workflow" / "rules" / "benchmark.smk").read_text()
    outputs = (
        benchmark.split("rule run_experiment:", 1)[1].split("output:", 1)[1].split("log:", 1)[0]
    )
    aggregate = (ROOT / "workflow" / "rules" / "aggregate.smk").read_text()
    return outputs.count("/experiments/{{experiment}}/"), aggregate.count("get_experiment_files(")


def bare_workdir(
    root: Path, experiments: int, name: str = "bare", outputs: int = 1, gathered: int = 1
) -> tuple[Path, list[str]]:
    workdir = root / name
    (workdir / "profiles" / "default").mkdir(parents=True)
    (workdir / "Snakefile").write_text(BARE_SNAKEFILE)
    # the same cores and rerun triggers as perflab's profile, so both check the same things
    profile = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    keep = {key: profile[key] for key in ("cores", "rerun-triggers") if key in profile}
    (workdir / "profiles" / "default" / "config.yaml").write_text(yaml.safe_dump(keep))
    settings = f"experiments={experiments} outputs={outputs} gathered={gathered} log={outputs > 1}"
    return workdir, ["--config", *settings.split()]


def snakemake(workdir: Path, args: list[str], code: str | None = None) -> tuple[float, float, str]:
    """Wall and CPU seconds of one Snakemake process, and its output."""
    command = [sys.executable, *(["-c", code] if code else ["-m", "snakemake"]), *args]
    bindir = str(Path(sys.executable).parent)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(Path.home())}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise RuntimeError(
            f"snakemake {' '.join(args)} in {workdir} failed:\n{result.stderr[-3000:]}"
        )
    return wall, cpu, result.stdout + result.stderr


def planned_jobs(output: str) -> int:
    match = re.search(r"^total\s+(\d+)$", output, re.M)
    return int(match[1]) if match else 0


def make_every_output(workdir: Path, args: list[str]) -> None:
    """Every output as an empty file (a directory when its name has no suffix), then
    recorded by Snakemake as made by its job."""
    _, _, listing = snakemake(workdir, ["--summary", *args])
    for line in listing.splitlines()[1:]:
        path = line.split("\t", 1)[0]
        if not path or path.startswith(("Using ", "Building ", "Assuming ")):
            continue
        target = workdir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix:
            target.touch()
        else:
            target.mkdir(exist_ok=True)
    snakemake(workdir, ["--touch", "--forceall", "--cores", "1", "--quiet", "all", *args], TOUCH)


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def measure(setups: dict, args_for: str, repeats: int) -> dict[str, dict[str, list[float]]]:
    times = {name: {"wall": [], "cpu": []} for name in setups}
    for _ in range(repeats):
        for name, (workdir, args) in setups.items():  # alternate: drift hits both alike
            wall, cpu, _ = snakemake(workdir, [*args_for.split(), *args])
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
    return times


def report(title: str, times: dict) -> float:
    def ratio(top: str, bottom: str, key: str) -> float:
        return statistics.median(times[top][key]) / statistics.median(times[bottom][key])

    print(f"{title}")
    for name in times:
        print(
            f"  {name:8} wall {spread(times[name]['wall'])} s   "
            f"cpu {spread(times[name]['cpu'])} s  (min / median / max)"
        )
    wall = ratio("perflab", "bare", "wall")
    verdict = "meets" if wall <= TARGET_RATIO else "misses"
    print(
        f"  perflab / bare: {wall:.2f}x wall, {ratio('perflab', 'bare', 'cpu'):.2f}x cpu "
        f"({verdict} the target of {TARGET_RATIO}x)"
    )
    print(
        f"  of which the files per job (shaped / bare): {ratio('shaped', 'bare', 'wall'):.2f}x wall, "
        f"{ratio('shaped', 'bare', 'cpu'):.2f}x cpu; perflab / shaped: "
        f"{ratio('perflab', 'shaped', 'wall'):.2f}x wall, {ratio('perflab', 'shaped', 'cpu'):.2f}x cpu"
    )
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="perflab-bench-"))
    try:
        outputs, gathered = experiment_shape()
        setups = {
            "perflab": perflab_workdir(root, args.experiments),
            "bare": bare_workdir(root, args.experiments),
            "shaped": bare_workdir(root, args.experiments, "shaped", outputs, gathered),
        }
        jobs = {
            name: planned_jobs(snakemake(workdir, ["-n", *extra])[2])
            for name, (workdir, extra) in setups.items()
        }
        print(
            f"sweep: {args.experiments} experiments; jobs planned: perflab {jobs['perflab']}, "
            f"bare {jobs['bare']}; {args.repeats} runs each, alternating\n"
            f"bare: one output per job, one gathered; shaped: the bare Snakefile with "
            f"perflab's {outputs} outputs and a log per job, {gathered} gathered"
        )
        report("dry run of the fresh sweep (-n)", measure(setups, "-n", args.repeats))
        for workdir, extra in setups.values():
            make_every_output(workdir, extra)
        for name, (workdir, extra) in setups.items():
            output = snakemake(workdir, ["-n", *extra])[2]
            if "Nothing to be done" not in output:
                raise RuntimeError(
                    f"{name}: outputs made but Snakemake still plans jobs:\n{output[-2000:]}"
                )
        report("no-op rerun (everything up to date)", measure(setups, "", args.repeats))
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
