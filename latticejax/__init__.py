"""latticejax: a JAX research framework for lattice-structured models.

Layers (each imports only those below it):
  latticejax.lattices   pure lattice math (no Flax)
  latticejax.quantizers, latticejax.rnn, latticejax.quant   Flax NNX modules
  latticejax.data, latticejax.train, latticejax.main          the experiment engine
  experiments/, configs/                                      recipes and their configs
  pallas_kernels/                                             leaf: imports only jax
"""

__version__ = "0.1.0"
