"""Model surgery: fake-quantize, export and reload the Linear/Einsum kernels of any NNX model.

Selected layers (a regex on the kernel's parameter path, e.g. ``"blocks/.*/mlp/.*/kernel"``, as
in qwix/AQT) are wrapped in place by `QuantizedLinear`, which holds the original layer and a
`GLVQ` quantizer and feeds the layer's computation with the fake-quantized kernel; the model's
own code is untouched. `export_packed` turns each wrapper into the GLVQ packed format of
`pallas_kernels.packing` (arXiv 2510.20984) and `load_packed` swaps in `PackedLinear` layers that
run `pallas_kernels.lattice_matmul`. Kernels are seen as ``(K, N)`` matrices with ``y = x @ W``;
an Einsum kernel's contracted axes (those shared with the input operand) form K.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from latticejax.quant.glvq import GLVQ
from pallas_kernels import packing
from pallas_kernels.lattice_matmul import lattice_matmul

Path = tuple
LAYER_TYPES = (nnx.Linear, nnx.Einsum)


def path_str(path: Path) -> str:
    """``("blocks", 0, "mlp")`` -> ``"blocks/0/mlp"``."""
    return "/".join(str(p) for p in path)


def _einsum_axes(layer: nnx.Einsum) -> tuple[list[int], list[int]]:
    lhs, rest = layer.einsum_str.replace(" ", "").split(",")
    rhs = rest.split("->")[0]
    if "." in lhs or "." in rhs:
        raise ValueError(f"Einsum with ellipsis is not supported, got {layer.einsum_str!r}.")
    ins = [i for i, c in enumerate(rhs) if c in lhs]
    outs = [i for i, c in enumerate(rhs) if c not in lhs]
    return ins, outs


def kernel_to_matrix(layer: nnx.Module, kernel: jax.Array) -> jax.Array:
    """The ``(K, N)`` matrix view of a Linear/Einsum ``kernel`` (contracted axes first)."""
    if isinstance(layer, nnx.Einsum):
        ins, outs = _einsum_axes(layer)
        K = int(np.prod([kernel.shape[i] for i in ins]))
        return jnp.transpose(kernel, ins + outs).reshape(K, -1)
    return kernel


def matrix_to_kernel(layer: nnx.Module, W: jax.Array) -> jax.Array:
    """Inverse of `kernel_to_matrix` for ``layer``'s kernel shape."""
    shape = layer.kernel.shape
    if isinstance(layer, nnx.Einsum):
        ins, outs = _einsum_axes(layer)
        perm = ins + outs
        W = W.reshape([shape[i] for i in perm])
        return jnp.transpose(W, np.argsort(perm))
    return W.reshape(shape)


def apply_with_kernel(layer: nnx.Module, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``layer(x)`` computed with ``kernel`` in place of ``layer.kernel`` (Linear or Einsum).

    Args:
      layer: an ``nnx.Linear`` or ``nnx.Einsum``. x: the layer's input.
      kernel: array of ``layer.kernel``'s shape.
    Returns:
      the layer's output for ``x``.
    """
    bias = layer.bias[...] if layer.bias is not None else None
    x, kernel, bias = layer.promote_dtype((x, kernel, bias), dtype=layer.dtype)
    if isinstance(layer, nnx.Einsum):
        s = layer.einsum_str.replace(" ", "")
        y = layer.einsum_op(s, x, kernel, precision=layer.precision)
        if bias is not None:
            y = y + jnp.reshape(bias, layer._infer_broadcasted_bias_shape(s, x, kernel))
        return y
    y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=layer.precision)
    return y if bias is None else y + bias


class QuantizedLinear(nnx.Module):
    """A Linear/Einsum layer whose kernel is fake-quantized by a `GLVQ` quantizer on each call.

    Attributes:
      inner: the wrapped layer (its kernel stays the trainable latent weight).
      quantizer: `GLVQ` of the kernel's ``(K, N)`` matrix view.
    """

    def __init__(self, inner: nnx.Module, quantizer: GLVQ):
        if not isinstance(inner, LAYER_TYPES):
            raise TypeError(f"inner must be nnx.Linear or nnx.Einsum, got {type(inner).__name__}.")
        self.inner = inner
        self.quantizer = quantizer

    def quantized_kernel(self) -> jax.Array:
        """Fake-quantized kernel in the layer's own kernel shape."""
        W = kernel_to_matrix(self.inner, self.inner.kernel[...])
        return matrix_to_kernel(self.inner, self.quantizer(W))

    def __call__(self, x: jax.Array) -> jax.Array:
        return apply_with_kernel(self.inner, x, self.quantized_kernel())


class PackedLinear(nnx.Module):
    """Inference layer over a `pallas_kernels.packing.PackedLatticeWeight`.

    Linear layers call `pallas_kernels.lattice_matmul` (Pallas on GPU, reference elsewhere);
    Einsum layers decode the kernel and run their einsum.
    """

    def __init__(self, inner: nnx.Module, packed: packing.PackedLatticeWeight):
        packing.validate(packed)
        self.inner = inner
        self.packed = nnx.data(packed)
        W = kernel_to_matrix(inner, inner.kernel[...])
        if tuple(W.shape) != tuple(packed.shape):
            raise ValueError(f"packed.shape {packed.shape} != layer matrix shape {W.shape}.")
        # The float kernel is not kept: only the packed weight (and the bias) are state.
        self.inner.kernel = nnx.Variable(jnp.zeros((0,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        if isinstance(self.inner, nnx.Einsum):
            W = packing.dequantize(self.packed)
            lay = self.inner
            ins, outs = _einsum_axes(lay)
            perm = ins + outs
            k = jnp.transpose(W.reshape([lay.kernel_shape[i] for i in perm]), np.argsort(perm))
            return apply_with_kernel(lay, x, k)
        y = lattice_matmul(x.astype(jnp.float32), self.packed)
        if self.inner.bias is not None:
            y = y + self.inner.bias[...]
        return y.astype(x.dtype if self.inner.dtype is None else self.inner.dtype)


def find_layers(model: nnx.Module, pattern: str) -> list[Path]:
    """Paths of the Linear/Einsum layers whose kernel path ``"<layer path>/kernel"`` matches.

    Args:
      model: any NNX module. pattern: regex searched (``re.search``) in the kernel path.
    Returns:
      list of module paths (tuples), in the model's traversal order.
    """
    rx = re.compile(pattern)
    out = []
    for path, mod in nnx.iter_modules(model):
        if isinstance(mod, LAYER_TYPES) and rx.search(path_str(path) + "/kernel"):
            if not any(isinstance(p, str) and p == "inner" for p in path):
                out.append(tuple(path))
    return out


def get_module(model: nnx.Module, path: Path) -> nnx.Module:
    """The submodule at ``path`` (attribute names and list indices)."""
    m = model
    for p in path:
        m = m[p] if isinstance(p, int) else getattr(m, p)
    return m


def set_module(model: nnx.Module, path: Path, new: nnx.Module) -> None:
    """Replaces the submodule at ``path`` in place."""
    if not path:
        raise ValueError("path must name a submodule, got the empty path (the model itself).")
    parent = get_module(model, path[:-1])
    if isinstance(path[-1], int):
        parent[path[-1]] = new
    else:
        setattr(parent, path[-1], new)


def quantize_model(
    model: nnx.Module,
    pattern: str,
    make_quantizer: Callable[[str, jax.Array], GLVQ],
) -> list[str]:
    """Wraps every matching Linear/Einsum of ``model`` in a `QuantizedLinear`, in place.

    Args:
      model: NNX module (changed in place). pattern: regex on kernel paths (`find_layers`).
      make_quantizer: ``(path_str, W (K, N)) -> GLVQ`` builds each layer's quantizer.
    Returns:
      the wrapped layers' path strings.
    """
    paths = find_layers(model, pattern)
    if not paths:
        raise ValueError(f"pattern={pattern!r} matched no Linear/Einsum kernel of the model.")
    for path in paths:
        layer = get_module(model, path)
        W = kernel_to_matrix(layer, layer.kernel[...])
        set_module(model, path, QuantizedLinear(layer, make_quantizer(path_str(path), W)))
    return [path_str(p) for p in paths]


def quantized_layers(model: nnx.Module) -> list[tuple[Path, QuantizedLinear]]:
    """All `QuantizedLinear` wrappers of ``model`` with their paths."""
    return [(tuple(p), m) for p, m in nnx.iter_modules(model) if isinstance(m, QuantizedLinear)]


def bake(model: nnx.Module) -> None:
    """Replaces each `QuantizedLinear` by its inner layer holding the dequantized kernel."""
    for path, q in quantized_layers(model):
        kernel = jax.lax.stop_gradient(q.quantized_kernel())
        q.inner.kernel[...] = kernel
        set_module(model, path, q.inner)


def export_packed(model: nnx.Module) -> dict[str, packing.PackedLatticeWeight]:
    """Packs every `QuantizedLinear` (GLVQ format, arXiv 2510.20984).

    Returns:
      ``{path_str: PackedLatticeWeight}`` with ``codes``, ``generators (K/d, N/go, d, d)``,
      ``scales (N,)``; `pallas_kernels.packing.dequantize` of each equals the wrapper's
      fake-quantized matrix.
    """
    out = {}
    for path, q in quantized_layers(model):
        if q.quantizer.compand:
            raise ValueError(
                f"{path_str(path)!r} uses companding (compand={q.quantizer.compand}); the packed "
                "format decodes scales * z @ G only, expected compand=0 for export_packed "
                "(use bake for companded layers)."
            )
        W = kernel_to_matrix(q.inner, q.inner.kernel[...])
        z = q.quantizer.codes(W)
        out[path_str(path)] = packing.pack_glvq(
            z,
            q.quantizer.generators(),
            q.quantizer.scales[...],
            bits=q.quantizer.bits,
            group_out=q.quantizer.group_out,
        )
    return out


def load_packed(model: nnx.Module, packed: dict[str, packing.PackedLatticeWeight]) -> None:
    """Swaps in `PackedLinear` layers for the paths of ``packed`` (wrapped or plain), in place."""
    by_path = {path_str(p): p for p, m in nnx.iter_modules(model)}
    for name, pw in packed.items():
        if name not in by_path:
            raise ValueError(f"packed has path {name!r}, which the model does not have.")
        path = by_path[name]
        layer = get_module(model, path)
        if isinstance(layer, QuantizedLinear):
            layer = layer.inner
        if not isinstance(layer, LAYER_TYPES):
            raise TypeError(f"{name!r} is a {type(layer).__name__}, not Linear/Einsum.")
        set_module(model, path, PackedLinear(layer, pw))
