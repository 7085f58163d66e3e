"""The launcher end to end in a subprocess: overrides, saved config, locked-config errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _launch(*args):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    return subprocess.run(
    [sys.executable, "-m", "latticejax.main", *args],
    cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
  )  # fmt: skip


def test_main_runs_tiny_config_with_overrides(tmp_path):
    proc = _launch(
        "--config=configs/classifier.py:tiny",
        f"--workdir={tmp_path}",
        "--config.train.steps=6",
        "--config.train.eval_every=3",
        "--config.optimizer.learning_rate=0.01",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step 6 eval:" in proc.stdout
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["train"]["steps"] == 6 and saved["optimizer"]["learning_rate"] == 0.01
    assert (tmp_path / "checkpoints" / "6").is_dir()
    assert {
        r["step"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
    } >= {
        3,
        6,
    }


def test_main_rejects_unknown_key_and_bad_type(tmp_path):
    proc = _launch("--config=configs/classifier.py:tiny", f"--workdir={tmp_path}",
                 "--config.train.stepz=3")  # fmt: skip
    assert proc.returncode != 0 and "stepz" in proc.stderr
    proc = _launch("--config=configs/classifier.py:tiny", f"--workdir={tmp_path}",
                 "--config.train.steps=many")  # fmt: skip
    assert proc.returncode != 0 and "many" in proc.stderr
    assert not (tmp_path / "config.json").exists()
