"""Does planning a sweep grow linearly with its experiments? perflab's workflow against bare Snakefiles.

At two sizes or more, builds a sweep of N experiments (the temperature suite
with N values on the calibration engine) in a temporary copy of the workflow,
a bare Snakefile with N one-file jobs gathered by one rule — the least any
N-experiment sweep can ask of Snakemake — and the same bare Snakefile shaped
like perflab's experiment jobs (as many outputs and a log per job, as many
files per experiment gathered), which separates what the number of files costs
from what perflab's rules add. For each it times, in this one run, alternating:

- the dry run of the fresh sweep (nothing measured yet: every job planned);
- the no-op rerun once every output exists and Snakemake has recorded it
  (outputs are made as empty files and recorded with ``--touch``, so nothing
  is measured; the check Snakemake does is the same).

It prints min/median/max wall seconds and the CPU seconds of the Snakemake
process, the median ratios perflab / bare and perflab / shaped at each size,
and the growth exponent of each: the slope of log(time) against
log(experiments) from the smallest size to the largest (1 is linear; below 1,
Snakemake's fixed start-up still weighs in). Verdicts use CPU seconds, steadier
than wall time on a loaded machine: the ratio targets (1.5x bare or 1.1x
shaped), and the exit status, 1 when perflab's exponent is above
``--max-exponent`` for either the dry run or the no-op rerun. Run by hand:

    python bench/pipeline_scale.py [--experiments 300 3000] [--repeats 3]
    python bench/pipeline_scale.py --experiments 1000 10000 --repeats 1 --dry-run-only

Quote ratios from one run; these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import math
import os
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
TARGET_SHAPED_RATIO = 1.1
# At 200 and 800 experiments: 0.42 for linear planning, 1.45 with the quadratic job group.
MAX_EXPONENT = 1.2

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
    # distinct for up to 200,000 experiments, each in at most 6 significant digits
    temperatures = [round(2.0 * i / experiments, 5) for i in range(experiments)]
    return {
        "run": "bench-scale",
        "repeats": 1,  # one experiment per temperature: N experiments, as the floors' N jobs
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
    # the perflab the script runs under, not another install; the Slurm cluster the
    # shell knows (the Slurm plugin asks it for its settings at every start)
    env |= {key: os.environ[key] for key in ("PYTHONPATH", "SLURM_CONF") if key in os.environ}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise RuntimeError(
            f"snakemake {' '.join(args)} in {workdir} failed (exit status "
            f"{result.returncode}):\n{result.stdout[-1000:]}{result.stderr[-3000:]}"
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


def median(times: dict, name: str, key: str) -> float:
    return statistics.median(times[name][key])


def measure(setups: dict, args_for: str, repeats: int) -> tuple[dict, dict[str, str]]:
    """Wall and CPU seconds of each setup's runs, and each setup's first output."""
    times = {name: {"wall": [], "cpu": []} for name in setups}
    outputs = {}
    for _ in range(repeats):
        for name, (workdir, args) in setups.items():  # alternate: drift hits both alike
            wall, cpu, output = snakemake(workdir, [*args_for.split(), *args])
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
            outputs.setdefault(name, output)
    return times, outputs


def report_size(experiments: int, times: dict, planned: dict[str, int] | None) -> None:
    def ratio(top: str, bottom: str, key: str) -> float:
        return median(times, top, key) / median(times, bottom, key)

    jobs = ", ".join(f"{name} {count}" for name, count in (planned or {}).items())
    print(f"  {experiments} experiments" + (f" (jobs planned: {jobs})" if jobs else ""))
    for name in times:
        print(
            f"    {name:8} wall {spread(times[name]['wall'])} s   "
            f"cpu {spread(times[name]['cpu'])} s  (min / median / max)"
        )
    bare = ratio("perflab", "bare", "cpu")
    shaped = ratio("perflab", "shaped", "cpu")
    verdict = "meets" if bare <= TARGET_RATIO or shaped <= TARGET_SHAPED_RATIO else "misses"
    print(
        f"    perflab / bare: {ratio('perflab', 'bare', 'wall'):.2f}x wall, {bare:.2f}x cpu; "
        f"perflab / shaped: {ratio('perflab', 'shaped', 'wall'):.2f}x wall, {shaped:.2f}x cpu; "
        f"shaped / bare: {ratio('shaped', 'bare', 'wall'):.2f}x wall, "
        f"{ratio('shaped', 'bare', 'cpu'):.2f}x cpu\n"
        f"    ({verdict} the target: {TARGET_RATIO}x bare or {TARGET_SHAPED_RATIO}x shaped, cpu)"
    )


def growth_exponent(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) against log(size); two sizes: the secant."""
    xs = [math.log(size) for size in sizes]
    ys = [math.log(value) for value in seconds]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    return covariance / sum((x - mean_x) ** 2 for x in xs)


def report_growth(by_size: dict[int, dict], max_exponent: float) -> bool:
    """Print each setup's growth exponent; True when perflab's CPU exponent is too high."""
    sizes = sorted(by_size)
    exponents = {}
    for name in by_size[sizes[0]]:
        exponents[name] = {
            key: growth_exponent(sizes, [median(by_size[n], name, key) for n in sizes])
            for key in ("wall", "cpu")
        }
    span = f"{sizes[0]} to {sizes[-1]} experiments"
    listed = ", ".join(
        f"{name} {values['wall']:.2f} wall / {values['cpu']:.2f} cpu"
        for name, values in exponents.items()
    )
    print(f"  growth exponent, {span}: {listed}")
    flagged = exponents["perflab"]["cpu"] > max_exponent
    if flagged:
        print(
            f"  FLAG: perflab grows with exponent {exponents['perflab']['cpu']:.2f} "
            f"(cpu) above {max_exponent}: planning is no longer linear in the experiments"
        )
    return flagged


def setups_for(root: Path, experiments: int) -> dict:
    outputs, gathered = experiment_shape()
    base = root / str(experiments)
    base.mkdir()
    return {
        "perflab": perflab_workdir(base, experiments),
        "bare": bare_workdir(base, experiments),
        "shaped": bare_workdir(base, experiments, "shaped", outputs, gathered),
    }


def check_all_done(setups: dict) -> None:
    for name, (workdir, extra) in setups.items():
        output = snakemake(workdir, ["-n", *extra])[2]
        if "Nothing to be done" not in output:
            raise RuntimeError(
                f"{name}: outputs made but Snakemake still plans jobs:\n{output[-2000:]}"
            )


def run(args: argparse.Namespace, root: Path) -> bool:
    sizes = sorted(set(args.experiments))
    setups = {size: setups_for(root, size) for size in sizes}
    outputs, gathered = experiment_shape()
    print(
        f"sweeps of {', '.join(map(str, sizes))} experiments; {args.repeats} runs each, "
        f"alternating; bare: one output per job, one gathered; shaped: the bare Snakefile "
        f"with perflab's {outputs} outputs and a log per job, {gathered} gathered"
    )
    modes = [("dry run of the fresh sweep (-n)", "-n")]
    if not args.dry_run_only:
        modes.append(("no-op rerun (everything up to date)", ""))
    flagged = False
    for title, command in modes:
        if not command:  # the no-op rerun needs every output made and recorded
            for size in sizes:
                for workdir, extra in setups[size].values():
                    make_every_output(workdir, extra)
                check_all_done(setups[size])
        print(title)
        by_size = {}
        for size in sizes:
            by_size[size], first = measure(setups[size], command, args.repeats)
            planned = {name: planned_jobs(output) for name, output in first.items()}
            report_size(size, by_size[size], planned if command == "-n" else None)
        flagged |= report_growth(by_size, args.max_exponent)
    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-exponent", type=float, default=MAX_EXPONENT)
    parser.add_argument(
        "--dry-run-only", action="store_true", help="time the dry run only (no no-op rerun)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if len(set(args.experiments)) < 2:
        parser.error("--experiments needs two sizes or more to show how planning grows")
    root = Path(tempfile.mkdtemp(prefix="perflab-bench-"))
    try:
        flagged = run(args, root)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if flagged else 0)


if __name__ == "__main__":
    main()
