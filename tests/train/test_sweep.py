"""Sweep: grid parsing and expansion (typed), and a two-run sweep in sub-workdirs."""

import json

import pytest

from configs import classifier as classifier_config
from latticejax.train import sweep
from tests.train.helpers import tiny_config


def test_parse_and_expand_grid():
    assert sweep.parse_grid("model.kind=mlp,cnn; seed=0,1") == [
        ("model.kind", ["mlp", "cnn"]),
        ("seed", ["0", "1"]),
    ]
    runs = sweep.expand(classifier_config.get_config("tiny"), "model.kind=mlp,cnn;seed=0,1")
    assert [name for name, _ in runs] == [
        "model.kind=mlp,seed=0",
        "model.kind=mlp,seed=1",
        "model.kind=cnn,seed=0",
        "model.kind=cnn,seed=1",
    ]
    assert [(c.model.kind, c.seed) for _, c in runs] == [
    ("mlp", 0), ("mlp", 1), ("cnn", 0), ("cnn", 1)
  ]  # fmt: skip
    assert sweep.run_name([("data.data_dir", "/a b")]) == "data.data_dir=_a_b"


@pytest.mark.parametrize(
  "grid,match",
  [("seed", "must look like"), ("seed=1;seed=2", "twice"), ("sead=1", "no key 'sead'"),
   ("seed=x", "expected an int")],
)  # fmt: skip
def test_bad_grids_fail_before_running(grid, match):
    with pytest.raises((ValueError, KeyError), match=match):
        sweep.expand(classifier_config.get_config("tiny"), grid)


def test_sweep_runs_each_point_in_its_own_workdir(tmp_path):
    config = tiny_config(steps=2, checkpoint_every=0)
    results = sweep.run_sweep(config, tmp_path, "seed=0,1")
    assert sorted(results) == ["seed=0", "seed=1"]
    for name in results:
        saved = json.loads((tmp_path / name / "config.json").read_text())
        assert saved["seed"] == int(name[-1])
    assert json.loads((tmp_path / "sweep.json").read_text()) == results
    assert results["seed=0"] != results["seed=1"]
