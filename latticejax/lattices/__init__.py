"""Lattices and decoders: pure JAX/numpy, no Flax state. See each module for the paper it follows."""

from latticejax.lattices import golay
from latticejax.lattices._base import Lattice, as_float_input, check_generator, straight_through

__all__ = ["Lattice", "as_float_input", "check_generator", "golay", "straight_through"]
