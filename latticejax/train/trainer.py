"""The training loop: ``train_and_evaluate(config, workdir)``.

One function in banner sections (big_vision style): config & workdir, mesh, input pipeline, model &
optimizer, sharding, update step, checkpoint/resume, evals, loop. The experiment module named by
``config.experiment`` supplies ``make_model``, ``loss_fn``, ``eval_fn`` and optionally
``make_figures`` / ``summarize`` (contract: docs/CONTRIBUTING.md). The train state is a plain dict
``{"model": nnx.State, "opt": nnx.State}``; per-step randomness is ``fold_in(key(seed), step)``, so
a resumed run replays exactly the uninterrupted one.

Multi-host (docs/DISTRIBUTED.md): every process runs this same function after
``latticejax.train.distributed.initialize``; the mesh spans all processes' devices, each process
loads its own slice of every global batch, checkpoints are written by all of them, and only process
0 writes config files, metrics, figures, summaries and the progress bar.
"""

from __future__ import annotations

import importlib
import json
import logging as pylogging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from latticejax.data import ArrayIterator, eval_batches, load_dataset
from latticejax.train import checkpoint as ckpt_lib
from latticejax.train import config_utils, distributed, writers
from latticejax.train import mesh as mesh_lib

# config.data keys the engine consumes; every other key is passed to the dataset loader.
ENGINE_DATA_KEYS = ("name", "batch_size", "eval_batch_size", "data_dir")
# config.optimizer keys the engine consumes; every other key is passed to the optax function.
ENGINE_OPTIMIZER_KEYS = (
    "name",
    "learning_rate",
    "schedule",
    "warmup_steps",
    "end_learning_rate",
    "grad_clip_norm",
)
REQUIRED_EXPERIMENT_FUNCTIONS = ("make_model", "loss_fn", "eval_fn")

Hook = Callable[[int, Mapping[str, Any]], None]


class _QuietOrbax(pylogging.Filter):
    """Drops orbax's per-save INFO chatter (dozens of lines per checkpoint); keeps warnings."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname


def _quiet_orbax() -> None:
    logger = pylogging.getLogger("absl")
    if not any(isinstance(f, _QuietOrbax) for f in logger.filters):
        logger.addFilter(_QuietOrbax())


# --------------------------------------------------------------------------------------------
# Names in configs -> code.


def import_experiment(name: str) -> ModuleType:
    """``importlib.import_module(f"experiments.{name}")``, checked against the contract."""
    try:
        module = importlib.import_module(f"experiments.{name}")
    except ModuleNotFoundError as e:
        if e.name not in (f"experiments.{name}", "experiments"):
            raise
        here = Path(__file__).resolve().parents[2] / "experiments"
        known = sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))
        raise ValueError(
            f"config.experiment={name!r}: no module experiments/{name}.py (found {known}); "
            "run from the repository root or install the package"
        ) from e
    missing = [f for f in REQUIRED_EXPERIMENT_FUNCTIONS if not callable(getattr(module, f, None))]
    if missing:
        raise ValueError(f"experiments.{name} must define {missing} (see docs/CONTRIBUTING.md)")
    return module


def make_schedule(opt_config: Mapping[str, Any], steps: int) -> optax.Schedule:
    """Learning-rate schedule from ``optimizer.{learning_rate, schedule, warmup_steps, ...}``.

    ``schedule`` is ``"constant"`` (default), ``"cosine"`` (warmup then cosine decay to
    ``end_learning_rate``, arXiv:1608.03983) or ``"linear"`` (warmup then linear decay).
    """
    lr = float(opt_config["learning_rate"])
    kind = opt_config.get("schedule", "constant")
    warmup = int(opt_config.get("warmup_steps", 0) or 0)
    end = float(opt_config.get("end_learning_rate", 0.0) or 0.0)
    if kind == "constant":
        if warmup:
            return optax.join_schedules(
                [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]
            )
        return optax.constant_schedule(lr)
    if kind == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(steps, warmup + 1), end)
    if kind == "linear":
        return optax.join_schedules(
            [
                optax.linear_schedule(0.0, lr, warmup),
                optax.linear_schedule(lr, end, max(steps - warmup, 1)),
            ],
            [warmup],
        )
    raise ValueError(f"optimizer.schedule must be 'constant', 'cosine' or 'linear', got {kind!r}")


def make_optimizer(
    opt_config: Mapping[str, Any], steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``getattr(optax, optimizer.name)(learning_rate=schedule, **other_keys)`` (+ optional clip).

    Keys of ``optimizer`` other than :data:`ENGINE_OPTIMIZER_KEYS` are passed to the optax function
    (``b1``, ``weight_decay``, ...), so a config reaches any optax optimizer by naming it.
    """
    name = opt_config["name"]
    fn = getattr(optax, name, None)
    if not callable(fn):
        raise ValueError(
            f"optimizer.name={name!r} is not an optax optimizer (e.g. 'adam', 'adamw')"
        )
    schedule = make_schedule(opt_config, steps)
    kwargs = {k: v for k, v in dict(opt_config).items() if k not in ENGINE_OPTIMIZER_KEYS}
    try:
        tx = fn(learning_rate=schedule, **kwargs)
    except TypeError as e:
        raise ValueError(
            f"optimizer {name!r} rejected config.optimizer keys {sorted(kwargs)}: {e}"
        ) from e
    clip = opt_config.get("grad_clip_norm")
    if clip:
        tx = optax.chain(optax.clip_by_global_norm(float(clip)), tx)
    return tx, schedule


# --------------------------------------------------------------------------------------------
# Update and eval steps.


def make_train_step(
    model_graphdef: Any,
    opt_graphdef: Any,
    loss_fn: Callable,
    state_sharding: Any,
    mesh: Mesh,
) -> Callable:
    """Jitted ``step(state, batch, rng) -> (state, metrics)``.

    Args:
      model_graphdef, opt_graphdef: from ``nnx.split`` of the model (train mode) and optimizer.
      loss_fn: ``loss_fn(model, batch, rng) -> (loss, metrics)`` (experiment contract).
      state_sharding: shardings of ``state`` (same pytree structure).
      mesh: the device mesh; the batch is split over its ``("data", "fsdp")`` axes.

    Returns:
      A function of ``state = {"model": nnx.State, "opt": nnx.State}``, a batch dict of
      ``(B, ...)`` arrays and a PRNG key, returning the new state (``state`` is donated) and a dict
      of float32 scalars holding the experiment's metrics plus ``loss`` and ``grad_norm``.
    """
    replicated = NamedSharding(mesh, P())

    def step(state, batch, rng):
        model = nnx.merge(model_graphdef, state["model"])
        optimizer = nnx.merge(opt_graphdef, state["opt"])

        def objective(m):
            return loss_fn(m, batch, rng)

        (loss, metrics), grads = nnx.value_and_grad(objective, has_aux=True)(model)
        optimizer.update(model, grads)
        metrics = dict(metrics)
        metrics["loss"] = loss
        metrics["grad_norm"] = optax.tree.norm(grads)
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        return {"model": nnx.state(model), "opt": nnx.state(optimizer)}, metrics

    return jax.jit(
        step,
        in_shardings=(state_sharding, mesh_lib.batch_sharding(mesh), replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )


def _splits(size: int, mesh: Mesh) -> bool:
    """Whether an eval batch of ``size`` examples is split over the data-parallel shards; if not,
    it runs replicated: every device computes the whole (small) batch, so the result is exact."""
    return size % mesh_lib.num_batch_shards(mesh) == 0


def place_eval_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Puts a global host eval batch on ``mesh``, split or replicated as :func:`_splits` says.

    Args:
      batch: dict of host arrays ``(B, ...)``, the same global batch on every process.
      mesh: the device mesh.

    Returns:
      dict of global ``jax.Array`` of shape ``(B, ...)`` (dtypes unchanged): split over the
      ``("data", "fsdp")`` axes when ``B`` is divisible by their size, else replicated.
    """
    if _splits(len(next(iter(batch.values()))), mesh):
        return mesh_lib.shard_batch(_local(batch), mesh)
    # Replicated: every process holds the whole array (its "local data" is the global array).
    sharding = NamedSharding(mesh, P())
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v), np.shape(v))
        for k, v in batch.items()
    }


def make_eval_step(
    eval_graphdef: Any, eval_fn: Callable, model_sharding: Any, mesh: Mesh
) -> Callable:
    """Jitted ``eval_step(model_state, batch) -> dict of float32 scalars`` (model in eval mode).

    ``batch`` comes from :func:`place_eval_batch`: a batch whose size is a multiple of the
    data-parallel shards is split over them, any other (the last < shards examples of the eval
    set) runs replicated, so no example is dropped.
    """

    def step(model_state, batch):
        model = nnx.merge(eval_graphdef, model_state)
        return {k: jnp.asarray(v, jnp.float32) for k, v in eval_fn(model, batch).items()}

    replicated = NamedSharding(mesh, P())
    split = jax.jit(
        step,
        in_shardings=(model_sharding, mesh_lib.batch_sharding(mesh)),
        out_shardings=replicated,
    )
    whole = jax.jit(step, in_shardings=(model_sharding, replicated), out_shardings=replicated)

    def eval_step(model_state, batch):
        size = next(iter(batch.values())).shape[0]
        return (split if _splits(size, mesh) else whole)(model_state, batch)

    return eval_step


def evaluate(
    eval_step: Callable,
    model_state: Any,
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    mesh: Mesh,
    max_batches: int | None = None,
) -> tuple[dict[str, float], int]:
    """Example-weighted mean of ``eval_step`` metrics over the eval split.

    Every example is evaluated exactly once (all of them unless ``max_batches`` caps the pass):
    :func:`latticejax.data.eval_batches` yields the remainder that does not divide over the
    data-parallel shards as its own batch, which :func:`place_eval_batch` replicates. Each batch's
    metrics are weighted by its number of examples, so per-example means are exact.

    Args:
      eval_step: from :func:`make_eval_step`.
      model_state: the model's ``nnx.State`` (sharded like the train state).
      arrays: the eval split, dict of host arrays ``(N, ...)``.
      batch_size: examples per full batch, a multiple of the data-parallel shards.
      mesh: the device mesh.
      max_batches: cap on the number of batches (None: the whole split).

    Returns:
      ``(metrics, num_examples)``: dict of float means and the number of examples evaluated.
    """
    shards = mesh_lib.num_batch_shards(mesh)
    totals: dict[str, float] = {}
    count = 0
    for batch in eval_batches(arrays, batch_size, multiple_of=shards, max_batches=max_batches):
        n = len(next(iter(batch.values())))
        metrics = jax.device_get(eval_step(model_state, place_eval_batch(batch, mesh)))
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + float(v) * n
        count += n
    return {k: v / count for k, v in totals.items()}, count


def _host_readable(tree: Any, mesh: Mesh) -> Any:
    """``tree`` replicated on every device when several processes share the mesh, so experiment
    code (figures, summaries) can read its arrays on the host; unchanged for one process."""
    return distributed.replicate(tree, mesh) if jax.process_count() > 1 else tree


def _call_on_all_processes(fn: Callable, workdir: Path, *args: Any) -> Any:
    """Calls ``fn(*args, out_dir)`` on every process (its computations may be collectives);
    processes other than 0 write into a throwaway directory."""
    if distributed.is_main_process():
        return fn(*args, str(workdir))
    with tempfile.TemporaryDirectory() as scratch:
        return fn(*args, scratch)


def _local(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """This process' contiguous slice of a global host batch."""
    pc, pi = jax.process_count(), jax.process_index()
    if pc == 1:
        return dict(batch)
    return {k: np.array_split(v, pc)[pi] for k, v in batch.items()}


# --------------------------------------------------------------------------------------------
# The run.


def create_state(
    config: ml_collections.ConfigDict, experiment: ModuleType, mesh: Mesh
) -> dict[str, Any]:
    """Builds model and optimizer and places their state on ``mesh``.

    The model is first traced abstractly (``nnx.eval_shape``) to get shapes and shardings, then
    initialised inside one ``jax.jit`` whose outputs are already sharded: no device ever holds a
    whole FSDP-sharded array, and initialisation is one compilation instead of one per op.

    Returns:
      dict with ``state`` (``{"model", "opt"}`` of sharded ``nnx.State``), ``sharding`` (same
      structure), ``model_graphdef`` (train mode), ``eval_graphdef`` (eval mode), ``opt_graphdef``
      and ``schedule`` (step -> learning rate).
    """
    tx, schedule = make_optimizer(config.optimizer, config.train.steps)

    def build():
        model = experiment.make_model(config, nnx.Rngs(config.seed))
        return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

    model, optimizer = nnx.eval_shape(build)
    model.eval()
    eval_graphdef = nnx.graphdef(model)
    model.train()
    model_graphdef, model_state = nnx.split(model)
    opt_graphdef, opt_state = nnx.split(optimizer)
    sharding = mesh_lib.state_shardings({"model": model_state, "opt": opt_state}, mesh)

    def init():
        model, optimizer = build()
        return {"model": nnx.state(model), "opt": nnx.state(optimizer)}

    state = jax.jit(init, out_shardings=sharding)()
    return {
        "state": state,
        "sharding": sharding,
        "model_graphdef": model_graphdef,
        "eval_graphdef": eval_graphdef,
        "opt_graphdef": opt_graphdef,
        "schedule": schedule,
    }


def _data_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return {k: v for k, v in config.data.items() if k not in ENGINE_DATA_KEYS}


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    *,
    devices: Sequence[jax.Device] | None = None,
    hooks: Sequence[Hook] = (),
) -> dict[str, Any]:
    """Trains ``config.experiment`` for ``config.train.steps`` steps in ``workdir`` (resuming).

    Args:
      config: an experiment config (keys in docs/CONTRIBUTING.md). Optional engine keys:
        ``train.stop_after`` (stop after this step, e.g. to test resume), ``train.eval_batches``
        (cap on eval batches), ``data.eval_batch_size``, ``data.data_dir``.
      workdir: run directory; holds config.json/.yaml, checkpoints/, metrics.jsonl, tensorboard/,
        PNG figures and summary.json. An existing valid checkpoint there is resumed from.
      devices: devices for the mesh (default all); tests pass one device for a reference run.
      hooks: ``hook(step, state)`` called after each step (after any checkpoint of that step).

    Returns:
      dict with ``step`` (last step run), ``eval`` (final eval metrics, floats; empty if stopped
      early), ``summary`` (from the experiment's ``summarize`` if any) and ``state`` (final train
      state).
    """
    # ---- Config and workdir.
    _quiet_orbax()
    config_utils.check_config(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    previous = config_utils.load_saved_config(workdir)
    current = json.loads(config.to_json_best_effort())
    if previous is not None and previous != current:
        logging.warning("Config differs from the one saved in %s; using the new one.", workdir)
    main_process = distributed.is_main_process()
    if main_process:
        config_utils.save_config(config, workdir)
    steps = config.train.steps

    # ---- Mesh.
    mesh = mesh_lib.make_mesh(config.mesh, devices)
    shards = mesh_lib.num_batch_shards(mesh)
    if config.data.batch_size % shards:
        raise ValueError(
            f"data.batch_size={config.data.batch_size} must be divisible by the {shards} "
            f"data-parallel shards of mesh {dict(mesh.shape)}"
        )
    eval_batch_size = config.data.get("eval_batch_size") or config.data.batch_size
    eval_batch_size = max(shards, eval_batch_size // shards * shards)

    # ---- Input pipeline.
    dataset = load_dataset(
        config.data.name, data_dir=config.data.get("data_dir"), **_data_options(config)
    )
    train_iter = ArrayIterator(
        dataset.train,
        config.data.batch_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )

    # ---- Model, optimizer and sharding.
    experiment = import_experiment(config.experiment)
    built = create_state(config, experiment, mesh)
    state, sharding = built["state"], built["sharding"]
    train_step = make_train_step(
        built["model_graphdef"], built["opt_graphdef"], experiment.loss_fn, sharding, mesh
    )
    eval_step = make_eval_step(built["eval_graphdef"], experiment.eval_fn, sharding["model"], mesh)
    base_rng = jax.random.key(config.seed)

    # ---- Checkpoint / resume.
    checkpointer = ckpt_lib.Checkpointer(workdir, config.train.keep_checkpoints)
    start = 0
    restored = checkpointer.restore_latest(state)
    if restored is not None:
        state, meta = restored
        start = int(meta["step"])
        train_iter.set_state(meta["data"])
        base_rng = jax.random.wrap_key_data(np.asarray(meta["rng"], np.uint32))
        logging.info("Resumed from step %d in %s", start, checkpointer.directory)
        if start > steps:
            logging.warning(
                "Checkpoint step %d is past train.steps=%d; evaluating it without training.",
                start,
                steps,
            )

    def save(step):
        meta = {"data": train_iter.get_state(), "rng": jax.random.key_data(base_rng).tolist()}
        checkpointer.save(step, state, meta)

    writer = writers.MetricWriter(workdir, resume_step=start, active=main_process)
    eval_every = config.train.eval_every
    checkpoint_every = config.train.checkpoint_every
    log_every = config.train.log_every
    max_eval_batches = config.train.get("eval_batches")
    stop_after = config.train.get("stop_after")
    last = steps if stop_after is None else min(steps, int(stop_after))

    def run_eval(step):
        metrics, count = evaluate(
            eval_step, state["model"], dataset.test, eval_batch_size, mesh, max_eval_batches
        )
        logging.info("Step %d: evaluated %d examples.", step, count)
        writer.write(step, {f"eval/{k}": v for k, v in metrics.items()})
        make_figures = getattr(experiment, "make_figures", None)
        if make_figures is not None:
            first = next(eval_batches(dataset.test, eval_batch_size, multiple_of=shards))
            batch = _host_readable(place_eval_batch(first, mesh), mesh)
            model = nnx.merge(built["eval_graphdef"], _host_readable(state["model"], mesh))
            _call_on_all_processes(
                lambda m, b, out: make_figures(m, b, out, step), workdir, model, batch
            )
        if main_process:
            writers.plot_curves(workdir)
        return metrics

    # ---- Loop.
    window: list[dict[str, float]] = []
    eval_metrics: dict[str, float] = {}
    t0, t_steps = time.perf_counter(), 0
    bar = tqdm(
        total=steps,
        initial=start,
        desc=config.experiment,
        dynamic_ncols=True,
        disable=not main_process,
    )
    try:
        for step in range(start + 1, last + 1):
            batch = mesh_lib.shard_batch(next(train_iter), mesh)
            state, metrics = train_step(state, batch, jax.random.fold_in(base_rng, step))
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not np.isfinite(metrics["loss"]):
                ckpts = checkpointer.all_steps()
                raise FloatingPointError(
                    f"Non-finite loss {metrics['loss']} at step {step} (metrics {metrics}); last "
                    f"checkpoint: {ckpts[-1] if ckpts else None}. Lower optimizer.learning_rate "
                    "or set optimizer.grad_clip_norm."
                )
            window.append(metrics)
            t_steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4g}", refresh=False)
            if step % log_every == 0 or step == last:
                dt = time.perf_counter() - t0
                scalars = {f"train/{k}": float(np.mean([m[k] for m in window])) for k in window[0]}
                scalars["train/learning_rate"] = float(built["schedule"](step - 1))
                scalars["train/steps_per_sec"] = t_steps / max(dt, 1e-9)
                writer.write(step, scalars)
                window, t0, t_steps = [], time.perf_counter(), 0
            if (eval_every and step % eval_every == 0) or step == steps:
                eval_metrics = run_eval(step)
                if main_process:
                    bar.write(
                        f"step {step}: "
                        + ", ".join(f"{k}={v:.4g}" for k, v in eval_metrics.items())
                    )
            if (checkpoint_every and step % checkpoint_every == 0) or step == last:
                save(step)
            for hook in hooks:
                hook(step, state)
    finally:
        bar.close()
        writer.flush()

    # ---- Final evaluation and summary.
    summary: dict[str, Any] = {}
    if last == steps:
        if start >= steps:  # nothing left to train: evaluate the restored state
            eval_metrics = run_eval(start)
        summarize = getattr(experiment, "summarize", None)
        if summarize is not None:
            model = nnx.merge(built["eval_graphdef"], _host_readable(state["model"], mesh))
            summary = _call_on_all_processes(
                lambda m, out: summarize(m, config, out, eval_metrics), workdir, model
            )
            summary = dict(summary or {})
        result = {"step": steps, "eval": eval_metrics, "summary": summary}
        if main_process:
            text = json.dumps(result, indent=2, default=str) + "\n"
            (workdir / "summary.json").write_text(text)
    writer.close()
    checkpointer.close()
    if last != steps and main_process:  # run_eval plotted the finished run's curves already
        writers.plot_curves(workdir)
    return {"step": max(start, last), "eval": eval_metrics, "summary": summary, "state": state}
