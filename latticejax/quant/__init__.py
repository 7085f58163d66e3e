"""Weight quantization with lattices: GLVQ QAT (arXiv 2510.20984), RTN, GPTQ (arXiv 2210.17323),
GPTQ as Babai's nearest plane (arXiv 2507.18553), block LDLQ with E8P and randomized Hadamard
incoherence for any width 2^k * m with a Paley Hadamard order m (QuIP#, arXiv 2402.04396), GLVQ
post-training calibration, mu-law companding, model surgery and export to `pallas_kernels.packing`.

Conventions: a layer computes ``y = x @ W`` with ``W (K, N)``; calibration inputs ``X (n, K)``;
proxy Hessian ``H = 2 X^T X / n``; codes are signed ``b``-bit integers in
``[-2^(b-1), 2^(b-1)-1]``.
"""

from latticejax.quant.companding import mu_law, mu_law_inverse
from latticejax.quant.glvq import GLVQ, bits_per_weight, glvq_fake_quant, init_generators
from latticejax.quant.glvq_calibration import GLVQCalibration, glvq_calibrate, glvq_refit
from latticejax.quant.gptq import GPTQResult, gptq, gptq_back_to_front, gptq_with, hessian
from latticejax.quant.gptq_babai import gptq_nearest_plane
from latticejax.quant.hadamard import (
    fwht,
    hadamard_factor,
    incoherent_weight_and_hessian,
    inverse_randomized_hadamard,
    random_signs,
    randomized_hadamard,
    supported_orders,
)
from latticejax.quant.ldlq import ldlq_e8
from latticejax.quant.ptq import (
    METHODS,
    PTQOptions,
    capture_hessians,
    quantize_matrix,
    run_ptq,
)
from latticejax.quant.rtn import rtn, search_scales
from latticejax.quant.surgery import (
    PackedLinear,
    QuantizedLinear,
    bake,
    export_packed,
    load_packed,
    quantize_model,
)

__all__ = [
    "GLVQ",
    "GLVQCalibration",
    "METHODS",
    "GPTQResult",
    "PTQOptions",
    "PackedLinear",
    "QuantizedLinear",
    "bake",
    "bits_per_weight",
    "capture_hessians",
    "export_packed",
    "fwht",
    "glvq_calibrate",
    "glvq_fake_quant",
    "glvq_refit",
    "gptq",
    "gptq_back_to_front",
    "gptq_nearest_plane",
    "gptq_with",
    "hadamard_factor",
    "hessian",
    "incoherent_weight_and_hessian",
    "init_generators",
    "inverse_randomized_hadamard",
    "ldlq_e8",
    "load_packed",
    "mu_law",
    "mu_law_inverse",
    "quantize_matrix",
    "quantize_model",
    "random_signs",
    "randomized_hadamard",
    "rtn",
    "run_ptq",
    "search_scales",
    "supported_orders",
]
