"""The run's design: a seeded order of the points within each trial, targets ABBA."""

import copy
import itertools
import re
from collections import Counter
from pathlib import Path

import pytest
from scipy import stats

from perflab.config.design import (
    design_order,
    order_key,
    placement,
    point_order,
    target_sequence,
)
from perflab.config.load import ConfigError, load_config_file, load_config_files
from perflab.config.sweep import expand_conditions, expand_experiments
from perflab.measure.spec import experiment_spec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "config" / "config.yaml"
POINTS = [f"p{index}" for index in range(6)]


def default_config(**changes) -> dict:
    config = load_config_file(DEFAULT)
    return copy.deepcopy(config) | changes


def test_each_trial_is_its_own_seeded_permutation_reproduced_by_the_seed():
    first = point_order(7, 1, POINTS)
    assert sorted(first) == POINTS
    assert point_order(7, 1, reversed(POINTS)) == first  # the input's order plays no part
    assert point_order(7, 1, POINTS) == first
    assert point_order(7, 2, POINTS) != first
    assert point_order(8, 1, POINTS) != first


def test_every_place_is_equally_likely_for_every_point():
    """Over 600 seeds each of 4 points lands in each of 4 places about 150 times."""
    points = POINTS[:4]
    places = Counter(
        (point, place)
        for seed in range(600)
        for place, point in enumerate(point_order(seed, 1, points))
    )
    observed = [places[(point, place)] for point in points for place in range(4)]
    assert sum(observed) == 2400
    # 9 degrees of freedom (a 4 × 4 table with fixed margins)
    chi2 = sum((count - 150) ** 2 / 150 for count in observed)
    assert stats.chi2.sf(chi2, 9) > 0.001, observed


def test_the_order_of_two_points_is_independent_of_the_others():
    """Adding a point moves no other point's key: nothing else reruns."""
    before = point_order(3, 1, POINTS)
    after = point_order(3, 1, [*POINTS, "new"])
    assert [point for point in after if point != "new"] == before
    assert order_key(3, 1, "p0") == order_key(3, 1, "p0")
    assert len(order_key(3, 1, "p0")) == 32


def test_the_points_of_one_size_run_back_to_back_in_every_trial():
    """The default run's temperature and concurrency points (8 requests each) form one
    run of consecutive experiments in every trial, as do the prompt-length and KV-cache
    points (4 requests each); the sizes' order and the order within each differ by trial."""
    experiments = list(expand_experiments(default_config(repeats=3)).values())
    orders = []
    for trial in (1, 2, 3):
        blocks = [e.block for e in experiments if e.trial == trial]
        runs = [
            block for index, block in enumerate(blocks) if index == 0 or block != blocks[index - 1]
        ]
        assert len(runs) == len(set(runs)) == 4, blocks  # n4, n8, n34, d10s: each once
        orders.append((tuple(e.point_id for e in experiments if e.trial == trial), tuple(runs)))
    assert len({points for points, _ in orders}) == 3
    assert len({runs for _, runs in orders}) > 1
    in_block = [
        [e.point_id for e in experiments if e.trial == trial and e.block == "n8"]
        for trial in (1, 2, 3)
    ]
    assert sorted(in_block[0]) == sorted(in_block[1]) and len({tuple(b) for b in in_block}) > 1


def test_targets_turn_every_trial_abba():
    for point in POINTS:
        turns = [target_sequence(5, trial, point, ("a", "b")) for trial in range(1, 5)]
        assert turns[0] != turns[1] and turns[0] == turns[2] and turns[1] == turns[3]
        assert {turns[0], turns[1]} == {("a", "b"), ("b", "a")}
    firsts = {target_sequence(5, 1, point, ("a", "b"))[0] for point in POINTS}
    assert firsts == {"a", "b"}  # which goes first at trial 1 is drawn per point
    assert target_sequence(5, 1, "p0", (None,)) == (None,)


def test_the_default_run_every_first_trial_before_any_second_in_seeded_order():
    config = default_config(repeats=3)
    experiments = list(expand_experiments(config).values())
    assert [e.trial for e in experiments] == sorted(e.trial for e in experiments)
    blocks = {e.point_id: e.block for e in expand_conditions(config).values()}
    for trial in (1, 2, 3):
        in_trial = [e.point_id for e in experiments if e.trial == trial]
        assert in_trial == point_order(config["order_seed"], trial, blocks, blocks)
    orders = [tuple(e.point_id for e in experiments if e.trial == t) for t in (1, 2, 3)]
    assert len(set(orders)) == 3
    other = list(expand_experiments(default_config(repeats=3, order_seed=2)))
    assert other != [e.id for e in experiments] and sorted(other) == sorted(
        e.id for e in experiments
    )


def test_with_targets_each_point_runs_its_targets_back_to_back_in_turn():
    conditions = expand_conditions(default_config()).values()
    ordered = design_order(conditions, ("a", "b"), 2, seed=1)
    pairs = [ordered[index : index + 2] for index in range(0, len(ordered), 2)]
    assert all(one.point_id == two.point_id and one.trial == two.trial for one, two in pairs)
    first = {(one.point_id, one.trial): one.target for one, _ in pairs}
    assert all(first[(point, 1)] != first[(point, 2)] for point, _ in first)
    assert Counter(first.values()) == {"a": len(conditions), "b": len(conditions)}


def test_the_spec_and_metadata_record_the_placement_and_more_trials_change_none():
    config = default_config(repeats=1)
    experiment = next(iter(expand_experiments(config).values()))
    spec = experiment_spec(config, experiment)
    assert spec["design"] == {
        "order_seed": 1,
        "trial": 1,
        "order_key": order_key(1, 1, experiment.point_id, experiment.block),
        "target_turn": 0,
    }
    three = expand_experiments(config | {"repeats": 3})
    assert experiment_spec(config | {"repeats": 3}, three[experiment.id]) == spec
    reseeded = experiment_spec(config | {"order_seed": 9}, experiment)
    assert reseeded["design"]["order_key"] != spec["design"]["order_key"]
    assert placement(1, experiment).as_dict() == spec["design"]


@pytest.mark.parametrize("seed", [-1, 1.5, "one"])
def test_a_bad_order_seed_is_refused_naming_the_key(seed):
    config = load_config_file(DEFAULT)
    with pytest.raises(ConfigError, match="order_seed"):
        load_config_file(DEFAULT, overrides={"order_seed": seed})
    assert config["order_seed"] == 1


def test_no_two_points_share_a_key():
    keys = {order_key(1, trial, point) for trial, point in itertools.product((1, 2), POINTS)}
    assert len(keys) == 2 * len(POINTS)


def test_a_dry_run_plans_each_trial_in_the_seeded_order(tmp_path):
    """Snakemake's own plan (``-n``) follows the design: by the priorities it gives the
    jobs, the order is the seeded permutation of each trial, every first trial before
    any second, and another seed plans another order."""
    import shutil

    import yaml
    from conftest import run_snakemake

    for name in ("Snakefile", "workflow", "config", "profiles", "environment.yml"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    planned = {}
    for seed in (1, 2):
        (tmp_path / "design.yaml").write_text(yaml.safe_dump({"repeats": 2, "order_seed": seed}))
        files = ("config/calibration.yaml", "design.yaml")
        dry = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", *files)
        assert dry.returncode == 0, dry.stderr[-3000:]
        jobs = re.findall(
            r"rule run_experiment:.*?wildcards: experiment=(\S+)\s+priority: (\d+)",
            dry.stdout,
            re.S,
        )
        # the order Snakemake runs them in with one job at a time: highest priority first
        planned[seed] = [i for i, _ in sorted(jobs, key=lambda job: -int(job[1]))]
        config = load_config_files(
            [ROOT / "config" / "config.yaml", *(tmp_path / f for f in files)]
        )
        assert planned[seed] == list(expand_experiments(config))
        blocks = {e.point_id: e.block for e in expand_conditions(config).values()}
        for trial in (1, 2):
            in_trial = [
                i.removesuffix(f"-r{trial}") for i in planned[seed] if i.endswith(f"-r{trial}")
            ]
            assert in_trial == point_order(seed, trial, blocks, blocks)
        trials = [int(i.rsplit("-r", 1)[1]) for i in planned[seed]]
        assert trials == sorted(trials)
    assert planned[1] != planned[2] and sorted(planned[1]) == sorted(planned[2])


def test_a_dry_run_with_targets_plans_each_points_targets_together_in_abba_turns(tmp_path):
    import shutil

    import yaml
    from conftest import run_snakemake
    from test_targets import two_targets

    for name in ("Snakefile", "workflow", "config", "profiles", "environment.yml"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(two_targets(repeats=4)))
    dry = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", "two.yaml")
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = re.findall(
        r"rule run_experiment:.*?wildcards: experiment=(\S+)\s+priority: (\d+)", dry.stdout, re.S
    )
    planned = [i for i, _ in sorted(jobs, key=lambda job: -int(job[1]))]
    config = load_config_files([ROOT / "config" / "config.yaml", tmp_path / "two.yaml"])
    experiments = expand_experiments(config)
    assert planned == list(experiments)
    pairs = [[experiments[i] for i in planned[k : k + 2]] for k in range(0, len(planned), 2)]
    assert all(a.point_id == b.point_id and a.trial == b.trial for a, b in pairs)
    for point in {a.point_id for a, _ in pairs}:
        firsts = [
            a.target for a, _ in sorted(pairs, key=lambda p: p[0].trial) if a.point_id == point
        ]
        assert firsts in (["fast", "slow"] * 2, ["slow", "fast"] * 2)  # ABBA over 4 trials
