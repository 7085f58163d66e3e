"""Token mixers and a decoder LM: the Lattice compressed memory (arXiv 2504.05646) and baselines
(softmax attention, linear attention, DeltaNet, Gated DeltaNet), each with an exact sequential
reference and a chunk-parallel form, behind one interface (``__call__``, ``init_state``, ``step``).
"""

from latticejax.rnn.attention import SoftmaxAttention, rope
from latticejax.rnn.delta_rule import chunk_step, delta_rule_chunked, delta_rule_recurrent
from latticejax.rnn.deltanet import DeltaNet, GatedDeltaNet
from latticejax.rnn.lattice_memory import (
    LatticeMemory,
    lattice_chunked,
    lattice_recurrent,
    lattice_step,
    slot_norms,
)
from latticejax.rnn.linear_attention import (
    LinearAttention,
    linear_attention_chunked,
    linear_attention_recurrent,
)
from latticejax.rnn.lm import MIXERS, DecoderLM, resolve_mixer

__all__ = [
    "MIXERS",
    "DecoderLM",
    "DeltaNet",
    "GatedDeltaNet",
    "LatticeMemory",
    "LinearAttention",
    "SoftmaxAttention",
    "chunk_step",
    "delta_rule_chunked",
    "delta_rule_recurrent",
    "lattice_chunked",
    "lattice_recurrent",
    "lattice_step",
    "linear_attention_chunked",
    "linear_attention_recurrent",
    "resolve_mixer",
    "rope",
    "slot_norms",
]
