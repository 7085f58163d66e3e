"""Lattices and decoders: pure JAX/numpy, no Flax state. See each module for the paper it follows.

Lattices (``Lattice`` subclasses, classical scale, ``scale=`` on each): ``Zn``, ``Dn``, ``DnPlus``,
``An`` (n-dim Helmert frame of the sum-zero hyperplane), ``E8``, ``Leech`` (Λ24, ``leech.py``),
``GeneratorLattice`` (any basis, exact sphere decoder). Generic-basis algorithms: ``babai_round``,
``babai_nearest_plane``, ``lll``, ``sphere_decode``; ``normalized_second_moment`` estimates G(Λ).
"""

from latticejax.lattices import golay
from latticejax.lattices._base import Lattice, as_float_input, check_generator, straight_through
from latticejax.lattices.an import An
from latticejax.lattices.babai import babai_nearest_plane, babai_round
from latticejax.lattices.dn import Dn, DnPlus
from latticejax.lattices.e8 import E8
from latticejax.lattices.generator import GeneratorLattice
from latticejax.lattices.leech import Leech
from latticejax.lattices.leech_shell import (
    E8_SHELL_BITS,
    E8_SHELL_SIZE,
    LEECH_SHELL_BITS,
    LEECH_SHELL_SIZE,
    e8_shell_codeword,
    e8_shell_index,
    e8_shell_nearest,
    leech_shell_codeword,
    leech_shell_index,
    leech_shell_nearest,
)
from latticejax.lattices.lll import lll
from latticejax.lattices.nsm import normalized_second_moment
from latticejax.lattices.sphere_decoder import sphere_decode
from latticejax.lattices.zn import Zn

__all__ = [
    "E8_SHELL_BITS",
    "E8_SHELL_SIZE",
    "LEECH_SHELL_BITS",
    "LEECH_SHELL_SIZE",
    "An",
    "Dn",
    "DnPlus",
    "E8",
    "GeneratorLattice",
    "Lattice",
    "Leech",
    "Zn",
    "as_float_input",
    "babai_nearest_plane",
    "babai_round",
    "check_generator",
    "e8_shell_codeword",
    "e8_shell_index",
    "e8_shell_nearest",
    "golay",
    "leech_shell_codeword",
    "leech_shell_index",
    "leech_shell_nearest",
    "lll",
    "normalized_second_moment",
    "sphere_decode",
    "straight_through",
]
