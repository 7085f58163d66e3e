"""Pallas kernels of latticejax (a leaf package: imports only jax and numpy).

* ``packing``: the packed lattice-coded weight format (GLVQ arXiv 2510.20984, E8P arXiv 2402.04396).
* ``lattice_matmul``: ``y = x @ W`` with W decoded inside the kernel, plus its pure-JAX reference.
* ``leech_nearest``: fused exact Λ24-SQ nearest codeword (arXiv 2512.14697), plus its reference.
* ``lattice_chunk``: the Lattice-RNN chunk scan (arXiv 2504.05646) fused into one forward and one
  backward kernel (memory kept on chip across chunks), plus its pure-JAX reference.
* ``bench``: ``python -m pallas_kernels.bench`` (GPU table); ``sweep`` / ``_leech_sweep``: tuning.
"""
