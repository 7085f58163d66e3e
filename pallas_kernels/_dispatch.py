"""The ``interpret`` convention shared by the kernels' public entry points."""

from __future__ import annotations

import jax


def on_gpu() -> bool:
    """Whether the default backend is a GPU (where the compiled Pallas kernels run)."""
    return jax.default_backend() == "gpu"


def use_kernel(interpret: bool | None, on_gpu: bool) -> bool:
    """Whether the Pallas kernel runs (else the pure-JAX reference), from ``interpret``.

    True: the kernel in the Pallas interpreter (any backend); False: the compiled kernel, which
    needs a CUDA device (a ValueError elsewhere, never a silent fallback to the reference); None:
    the compiled kernel on CUDA devices and the pure-JAX reference elsewhere.

    Args:
      interpret: the caller's ``interpret`` argument.
      on_gpu: whether the default backend is a GPU.
    """
    if interpret is False and not on_gpu:
        raise ValueError(
            "interpret=False compiles the Pallas GPU kernel, which needs a CUDA device, but the "
            f"default backend is {jax.default_backend()!r}: pass interpret=None for the pure-JAX "
            "reference or interpret=True for the Pallas interpreter."
        )
    return interpret is not None or on_gpu
