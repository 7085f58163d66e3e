r"""PTQ table (method x bits -> perplexity, layer error, bits/weight, time) for the Shakespeare LM.

  python -m experiments.ptq --config=configs/ptq_shakespeare.py --workdir=runs/ptq
  python -m experiments.ptq --config=configs/ptq_shakespeare.py:tiny --workdir=/tmp/ptq

Only the 2-bit rows, no QAT rows (what docs/ptq_results.md reports first):

  python -m experiments.ptq --config=configs/ptq_shakespeare.py --workdir=runs/ptq \
    '--config.bits=(2,)' --config.qat_lattices=

Variants: ``tiny`` (a seconds-long run: tiny LM, few methods, what the tests run).
"""

import ml_collections

from configs import qat


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the locked config for the variant string ``arg`` ("" or "tiny")."""
    tokens = [t for t in (arg or "").split(",") if t]
    unknown = sorted(set(tokens) - {"tiny"})
    if unknown:
        raise ValueError(f"configs/ptq_shakespeare.py variant {arg!r}: unknown {unknown}; use tiny")
    tiny = "tiny" in tokens
    c = ml_collections.ConfigDict()
    c.seed = 0
    # The full-precision LM (trained first, through the engine) and its quantization pattern.
    c.lm = qat.get_config("fp,tiny" if tiny else "fp")
    # Methods of latticejax.quant.ptq.METHODS, comma-separated.
    c.methods = (
        "rtn,gptq,glvq"
        if tiny
        else "rtn,gptq,gptq_babai,gptq_had,ldlq_e8_had,glvq_zn,glvq_dn,glvq_e8,glvq,glvq_e8p"
    )
    c.bits = (2,) if tiny else (2, 3, 4)
    # GLVQ QAT rows (lattices of configs/qat.py), fine-tuned from the fp weights.
    c.qat_lattices = "glvq" if tiny else "glvq,zn"
    c.qat_steps = 10 if tiny else 150
    c.qat_learning_rate = 1e-3
    # Calibration: training windows, run in this many batches; held-out windows for perplexity.
    c.calib_seqs = 16 if tiny else 128
    c.calib_batches = 1 if tiny else 4
    c.eval_seqs = 32 if tiny else 256
    c.eval_batch_size = 64
    # PTQ options (latticejax.quant.ptq.PTQOptions).
    c.glvq_steps = 20 if tiny else 200
    c.group_out = ml_collections.config_dict.placeholder(int)
    c.block_size = 128
    return c.lock()
