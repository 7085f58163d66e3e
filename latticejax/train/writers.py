"""Metric writers: TensorBoard event files, a JSONL log and loss-curve figures in the workdir."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboardX import SummaryWriter  # noqa: E402


class MetricWriter:
    """Writes scalars to ``<workdir>/tensorboard/`` and ``<workdir>/metrics.jsonl``.

    Each JSONL line is ``{"step": int, "<split>/<name>": float, ...}``. On resume, lines with a step
    after the restored step are dropped first, so the log never holds two histories.

    Args:
      workdir: the run directory.
      resume_step: the step training restarts from (0 for a fresh run).
      active: False makes every method a no-op (processes other than 0 of a multi-host run).
    """

    def __init__(self, workdir: str | Path, resume_step: int = 0, *, active: bool = True):
        self.workdir = Path(workdir)
        self.jsonl = self.workdir / "metrics.jsonl"
        self.active = active
        self._tb = None
        if not active:
            return
        if self.jsonl.exists():
            kept = [r for r in read_jsonl(self.jsonl) if r["step"] <= resume_step]
            self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._tb = SummaryWriter(str(self.workdir / "tensorboard"), purge_step=resume_step + 1)

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Logs ``scalars`` (name -> python float) at ``step``."""
        if not self.active:
            return
        record = {"step": int(step)}
        for name, value in scalars.items():
            record[name] = float(value)
            self._tb.add_scalar(name, float(value), int(step))
        with self.jsonl.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_jsonl(path: str | Path) -> list[dict]:
    """Reads a ``metrics.jsonl`` file into a list of dicts (skips a torn last line)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_curves(workdir: str | Path, filename: str = "loss_curves.png") -> Path | None:
    """Plots every ``*loss*`` scalar of ``metrics.jsonl`` against step into ``workdir/filename``."""
    workdir = Path(workdir)
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return None
    series: dict[str, tuple[list[int], list[float]]] = {}
    for r in read_jsonl(path):
        for k, v in r.items():
            if k != "step" and "loss" in k and math.isfinite(v):
                series.setdefault(k, ([], []))
                series[k][0].append(r["step"])
                series[k][1].append(v)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (xs, ys) in sorted(series.items()):
        ax.plot(xs, ys, label=k, marker="o" if len(xs) < 20 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if all(y > 0 for _, ys in series.values() for y in ys):
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = workdir / filename
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
