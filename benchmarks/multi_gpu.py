r"""Data-parallel scaling on one host: the same config for N steps on 1 GPU and on all GPUs.

Run from the repository root (the package need not be installed):

  PYTHONPATH=. python benchmarks/multi_gpu.py --config=configs/vqvae.py --steps=200
  PYTHONPATH=. python benchmarks/multi_gpu.py --config=configs/char_lm.py:pystdlib --steps=60 \
      --fsdp --config.model.d_model=1024 --config.model.num_layers=8 \
      --config.model.num_heads=8 --config.data.seq_len=1025 --config.data.batch_size=32

Each measurement is a fresh subprocess (``CUDA_VISIBLE_DEVICES`` = the first GPU, then all of them;
``NCCL_NVLS_ENABLE=0``) that trains through ``latticejax.train.train_and_evaluate`` with the SAME
global batch (``data.batch_size``) on the mesh ``data=-1`` (``--fsdp`` adds a run on
``data=1, fsdp=N``, arXiv:1910.02054). ``--config.*`` overrides go to every run as with
``latticejax.main``; the script forces ``train.eval_every=0``, ``train.checkpoint_every=0``,
``train.log_every=1`` and stops after ``--steps`` (no final eval), so only training steps are timed.

Printed: a markdown table with steps/s (over the steps after ``--warmup``, the compile excluded),
speed-up and scaling efficiency (speed-up / GPUs) relative to 1 GPU, peak memory per device
(``jax.Device.memory_stats()["peak_bytes_in_use"]``), the last training loss and the largest
relative difference of the per-step training losses from the 1-GPU run (data parallelism changes
only the order of floating-point reductions, so the curves agree to float tolerance at first and
drift slowly). ``--out=FILE.json`` keeps every number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# Worker: one training run in this process, results as JSON.


def worker(argv: list[str]) -> None:
    """``multi_gpu.py --worker --config=... --result=FILE [--config.*=...]``: trains and reports."""
    from absl import app, flags
    from ml_collections import config_flags

    config_flag = config_flags.DEFINE_config_file("config", None, "config file", lock_config=True)
    result_flag = flags.DEFINE_string("result", None, "where to write the JSON result")
    workdir_flag = flags.DEFINE_string("workdir", None, "run directory (deleted first)")
    flags.DEFINE_bool("worker", True, "run one measurement")
    flags.DEFINE_integer("steps", 100, "training steps")
    flags.DEFINE_integer("warmup", 5, "steps excluded from timing")
    flags.DEFINE_string("mesh", "dp", "'dp' (data=-1) or 'fsdp' (data=1, fsdp=-1)")

    def main(_):
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        import jax

        from latticejax.train import train_and_evaluate, writers

        FLAGS = flags.FLAGS
        config = config_flag.value
        steps, warmup = FLAGS.steps, FLAGS.warmup
        if not 1 <= warmup < steps - 1:
            raise ValueError(f"--warmup must be in [1, --steps - 1), got {warmup} with {steps}")
        with config.unlocked():
            config.train.steps = steps + 1  # stop_after=steps: no final eval / summary
            config.train.stop_after = steps
            config.train.eval_every = 0
            config.train.checkpoint_every = 0
            config.train.log_every = 1
            config.mesh.data, config.mesh.fsdp = (-1, 1) if FLAGS.mesh == "dp" else (1, -1)
        workdir = Path(workdir_flag.value)
        shutil.rmtree(workdir, ignore_errors=True)
        times: dict[int, float] = {}

        def hook(step, state):
            times[step] = time.perf_counter()  # the loop has synced on this step's metrics

        train_and_evaluate(config, workdir, hooks=[hook])
        # Hook of step `steps` runs after the final checkpoint: time steps warmup+1 .. steps-1.
        sps = (steps - 1 - warmup) / (times[steps - 1] - times[warmup])
        losses = [
            r["train/loss"]
            for r in writers.read_jsonl(workdir / "metrics.jsonl")
            if "train/loss" in r
        ]
        peaks = []
        for d in jax.local_devices():
            stats = d.memory_stats() or {}
            peaks.append(stats.get("peak_bytes_in_use"))
        out = {
            "devices": jax.device_count(),
            "device_kind": jax.devices()[0].device_kind,
            "platform": jax.devices()[0].platform,
            "jax": jax.__version__,
            "mesh": FLAGS.mesh,
            "global_batch": config.data.batch_size,
            "steps": steps,
            "warmup": warmup,
            "steps_per_sec": sps,
            "peak_bytes_per_device": peaks,
            "losses": losses,
        }
        Path(result_flag.value).write_text(json.dumps(out, indent=1))

    app.run(main, argv=argv)


# --------------------------------------------------------------------------------------------
# Driver: one subprocess per measurement, then the table.


def _gpu_ids(arg: str | None) -> list[str]:
    if arg:
        return [g for g in arg.split(",") if g]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [g for g in visible.split(",") if g]
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"--gpus not given and nvidia-smi -L failed ({e}); pass --gpus=0,1") from e
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def _measure(args, overrides, gpus, mesh, scratch, cpu_devices=None) -> dict:
    tag = f"{len(gpus) if gpus else cpu_devices}{mesh}"
    result = scratch / f"result_{tag}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        f"--config={args.config}",
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--mesh={mesh}",
        f"--workdir={scratch / ('run_' + tag)}",
        f"--result={result}",
        *overrides,
    ]
    env = dict(os.environ, NCCL_NVLS_ENABLE="0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if cpu_devices:  # CPU dry run of the script itself (tests, laptops)
        env["JAX_PLATFORMS"] = "cpu"
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={cpu_devices}"
    else:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    print(f"[multi_gpu] {tag}: {' '.join(cmd[2:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, timeout=args.timeout)
    if proc.returncode != 0:
        return {"error": f"exit status {proc.returncode}", "mesh": mesh}
    out = json.loads(result.read_text())
    out["wall_s"] = time.perf_counter() - t0
    return out


def _gib(x):
    return f"{x / 2**30:.2f}" if x is not None else "n/a"


def table(config: str, runs: list[dict]) -> str:
    """Markdown table of the runs (the first one, on 1 device, is the baseline)."""
    base = runs[0]
    head = (
        "| config | devices | mesh | global batch | steps/s | speed-up | scaling efficiency | "
        "peak mem/device (GiB) | last loss | max rel. loss diff vs 1 device |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in runs:
        if "error" in r:
            rows.append(f"| {config} | ? | {r['mesh']} | | failed: {r['error']} | | | | | |")
            continue
        speedup = r["steps_per_sec"] / base["steps_per_sec"]
        n = r["devices"]
        peaks = [p for p in r["peak_bytes_per_device"] if p is not None]
        peak = _gib(max(peaks)) if peaks else "n/a"
        m = min(len(r["losses"]), len(base["losses"]))
        diff = max(
            abs(a - b) / max(abs(b), 1e-12) for a, b in zip(r["losses"][:m], base["losses"][:m])
        )
        rows.append(
            f"| {config} | {n} x {r['device_kind']} | {r['mesh']} | {r['global_batch']} | "
            f"{r['steps_per_sec']:.2f} | {speedup:.2f}x | {speedup / n:.0%} | {peak} | "
            f"{r['losses'][-1]:.4f} | {diff:.1e} |"
        )
    return head + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="config file[:variant]")
    parser.add_argument("--steps", type=int, default=100, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="first steps not timed")
    parser.add_argument("--gpus", default=None, help="GPU ids (default: all visible)")
    parser.add_argument("--fsdp", action="store_true", help="also run data=1, fsdp=all")
    parser.add_argument("--cpu_devices", type=int, default=0, help="CPU dry run on N fake devices")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    parser.add_argument("--out", default=None, help="write all results to this JSON file")
    args, overrides = parser.parse_known_args()
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        parser.error(f"unknown arguments {bad}; only --config.* overrides are passed through")

    scratch = Path(tempfile.mkdtemp(prefix="latticejax_multi_gpu_"))
    try:
        if args.cpu_devices:
            runs = [_measure(args, overrides, [], "dp", scratch, cpu_devices=1)]
            runs.append(_measure(args, overrides, [], "dp", scratch, args.cpu_devices))
            if args.fsdp:
                runs.append(_measure(args, overrides, [], "fsdp", scratch, args.cpu_devices))
        else:
            gpus = _gpu_ids(args.gpus)
            runs = [_measure(args, overrides, gpus[:1], "dp", scratch)]
            runs.append(_measure(args, overrides, gpus, "dp", scratch))
            if args.fsdp:
                runs.append(_measure(args, overrides, gpus, "fsdp", scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if "error" in runs[0]:
        raise SystemExit(f"the 1-device baseline failed: {runs[0]['error']}")
    print()
    print(f"Overrides: {' '.join(overrides) or '(none)'}; {args.steps} steps, {args.warmup} warmup")
    print(table(args.config, runs))
    if args.out:
        Path(args.out).write_text(json.dumps({"config": args.config, "runs": runs}, indent=1))


if __name__ == "__main__":
    if "--worker" in sys.argv[1:]:
        worker(sys.argv)
    else:
        main()
