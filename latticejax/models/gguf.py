"""A numpy reader for GGUF files (llama.cpp's model format, versions 2 and 3) and dequantization
of the ggml block formats they store.

Layout (all little-endian): ``b"GGUF"``, ``uint32 version``, ``uint64 n_tensors``,
``uint64 n_kv``; ``n_kv`` metadata entries ``(string key, uint32 type, value)`` where a string is
``uint64 length + utf-8 bytes`` and an array is ``uint32 element type, uint64 count, elements``;
``n_tensors`` tensor infos ``(string name, uint32 n_dims, uint64 ne[n_dims], uint32 ggml type,
uint64 offset)``; padding to ``general.alignment`` (default 32); the tensor data, each tensor at
its offset from the start of the data section. ``ne[0]`` is the fastest-varying dimension, so the
numpy shape is ``ne`` reversed (a Linear weight is ``(out, in)`` as in torch).

Block formats (ggml's ``ggml-common.h``; weights of a block of 32 values
share an fp16 scale ``d`` and, for the ``_1`` formats, an fp16 offset ``m``):
  Q4_0 ``x = d (q - 8)``, Q4_1 ``x = d q + m`` with 4-bit ``q``: byte ``j`` holds value ``j`` in its
  low nibble and value ``j + 16`` in its high nibble. Q5_0 / Q5_1: the same plus a 32-bit mask of
  5th bits (``x = d (q - 16)`` / ``d q + m``). Q8_0 ``x = d q`` with int8 ``q``. k-quants (Q2_K..
  Q8_K) are not read (SmolLM2-135M-Instruct.Q4_1.gguf uses only F32, Q8_0 and Q4_1).

Quantized storage of LLM weights in this form follows the LLM.int8 / GPTQ line of work
(arXiv 2208.07339, 2210.17323); the format itself is llama.cpp's (no paper).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

# Metadata value types.
_SCALARS = {
    0: "<u1",
    1: "<i1",
    2: "<u2",
    3: "<i2",
    4: "<u4",
    5: "<i4",
    6: "<f4",
    7: "?",
    10: "<u8",
    11: "<i8",
    12: "<f8",
}
_STRING, _ARRAY = 8, 9

# ggml tensor types: id -> (name, values per block, bytes per block).
GGML_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    30: ("BF16", 1, 2),
}
TYPE_IDS = {name: i for i, (name, _, _) in GGML_TYPES.items()}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor of a GGUF file.

    Attributes:
      name: tensor name (``"blk.0.attn_q.weight"``). shape: numpy shape (``ne`` reversed).
      ggml_type: type id (`GGML_TYPES`). offset: absolute byte offset in the file.
      nbytes: stored size in bytes.
    """

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int

    @property
    def type_name(self) -> str:
        return GGML_TYPES[self.ggml_type][0]


class _Cursor:
    def __init__(self, buf: memoryview, path: str):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise ValueError(
                f"path={self.path!r}: truncated at byte {self.pos} (wanted {n} more bytes, "
                f"file has {len(self.buf)})."
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def scalar(self, fmt: str) -> Any:
        dt = np.dtype(fmt)
        return np.frombuffer(self.take(dt.itemsize), dt)[0].item()

    def string(self) -> str:
        return bytes(self.take(self.scalar("<u8"))).decode("utf-8", errors="replace")

    def value(self, vtype: int, key: str) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, n = self.scalar("<u4"), self.scalar("<u8")
            if etype in _SCALARS:
                dt = np.dtype(_SCALARS[etype])
                return np.frombuffer(self.take(n * dt.itemsize), dt).copy()
            return [self.value(etype, key) for _ in range(n)]
        raise ValueError(
            f"path={self.path!r}: metadata key {key!r} has value type {vtype}, expected one of "
            f"{sorted([*_SCALARS, _STRING, _ARRAY])}."
        )


class GGUFFile:
    """A parsed GGUF file: ``.version``, ``.metadata`` (key -> value; arrays of numbers are numpy
    arrays, arrays of strings are lists), ``.tensors`` (name -> `TensorInfo`), and
    ``.tensor(name)`` -> dequantized float32 numpy array.

    Args:
      path: the ``.gguf`` file (memory-mapped, read only).
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        c = _Cursor(memoryview(self._map), self.path)
        magic = bytes(c.take(4))
        if magic != b"GGUF":
            raise ValueError(f"path={self.path!r}: magic {magic!r}, expected b'GGUF'.")
        self.version = c.scalar("<u4")
        if self.version not in (2, 3):
            raise ValueError(f"path={self.path!r}: GGUF version {self.version}, expected 2 or 3.")
        n_tensors, n_kv = c.scalar("<u8"), c.scalar("<u8")
        self.metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = c.string()
            self.metadata[key] = c.value(c.scalar("<u4"), key)
        raw = []
        for _ in range(n_tensors):
            name = c.string()
            n_dims = c.scalar("<u4")
            ne = [c.scalar("<u8") for _ in range(n_dims)]
            raw.append((name, ne, c.scalar("<u4"), c.scalar("<u8")))
        align = int(self.metadata.get("general.alignment", 32))
        if align <= 0 or align & (align - 1):
            raise ValueError(f"path={self.path!r}: general.alignment={align}, expected 2^k.")
        start = -(-c.pos // align) * align
        self.data_offset = start
        self.tensors: dict[str, TensorInfo] = {}
        for name, ne, t, off in raw:
            if t not in GGML_TYPES:
                raise ValueError(
                    f"tensor {name!r} in {self.path!r}: ggml type id {t} is not supported; "
                    f"supported: { {i: v[0] for i, v in GGML_TYPES.items()} }."
                )
            _, block, size = GGML_TYPES[t]
            n = int(np.prod(ne)) if ne else 1
            if ne and ne[0] % block:
                raise ValueError(
                    f"tensor {name!r}: ne[0]={ne[0]} not a multiple of the {GGML_TYPES[t][0]} "
                    f"block size {block}."
                )
            nbytes = n // block * size
            if start + off + nbytes > len(self._map):
                raise ValueError(
                    f"tensor {name!r}: bytes [{start + off}, {start + off + nbytes}) exceed the "
                    f"file size {len(self._map)}."
                )
            info = TensorInfo(name, tuple(int(x) for x in reversed(ne)), t, start + off, nbytes)
            self.tensors[name] = info

    def raw(self, name: str) -> np.ndarray:
        """The stored bytes of tensor ``name`` as a ``(nbytes,)`` uint8 array (a view)."""
        info = self._info(name)
        return self._map[info.offset : info.offset + info.nbytes]

    def tensor(self, name: str) -> np.ndarray:
        """Tensor ``name`` dequantized to float32 (integer types keep their dtype), numpy shape."""
        info = self._info(name)
        return dequantize(self.raw(name), info.ggml_type, info.shape, name=name)

    def _info(self, name: str) -> TensorInfo:
        if name not in self.tensors:
            raise KeyError(f"tensor {name!r} not in {self.path!r} ({len(self.tensors)} tensors).")
        return self.tensors[name]


def read_gguf(path: str | Path) -> GGUFFile:
    """Parses a GGUF v2/v3 file (see `GGUFFile`)."""
    return GGUFFile(path)


def _halves(b: np.ndarray, col: int) -> np.ndarray:
    """fp16 at byte column ``col`` of each block row ``b (nb, size)`` -> ``(nb, 1)`` float32."""
    return b[:, col : col + 2].copy().view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """``(nb, 16)`` uint8 -> ``(nb, 32)`` values: low nibbles then high nibbles."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)


def _fifth_bits(qh: np.ndarray) -> np.ndarray:
    """``(nb, 4)`` uint8 little-endian masks -> ``(nb, 32)`` 0/16 (bit ``j`` of value ``j``)."""
    bits = np.unpackbits(qh, axis=1, bitorder="little")
    return bits.astype(np.float32) * 16


def dequantize(
    data: np.ndarray, ggml_type: int, shape: tuple[int, ...], *, name: str = "?"
) -> np.ndarray:
    """Decodes the stored bytes of one tensor.

    Args:
      data: ``(nbytes,)`` uint8, the tensor's bytes. ggml_type: id in `GGML_TYPES`.
      shape: numpy shape (last dim = ``ne[0]``, a multiple of the block size). name: for errors.
    Returns:
      float32 array of ``shape`` (I8..I64 keep their integer dtype, F64 stays float64).
    """
    if ggml_type not in GGML_TYPES:
        raise ValueError(
            f"tensor {name!r}: ggml type id {ggml_type} is not supported; supported: "
            f"{ {i: v[0] for i, v in GGML_TYPES.items()} }."
        )
    tname, block, size = GGML_TYPES[ggml_type]
    n = int(np.prod(shape))
    data = np.asarray(data, np.uint8).reshape(-1)
    if n % block or data.size != n // block * size:
        raise ValueError(
            f"tensor {name!r}: {data.size} bytes for shape {shape} of type {tname}, expected "
            f"{n // block * size} ({size} bytes per {block} values)."
        )
    plain = {
        "F32": "<f4",
        "F16": "<f2",
        "I8": "<i1",
        "I16": "<i2",
        "I32": "<i4",
        "I64": "<i8",
        "F64": "<f8",
    }
    if tname in plain:
        out = data.view(plain[tname])
        out = out.astype(np.float32) if tname == "F16" else out.astype(out.dtype.newbyteorder("="))
        return out.reshape(shape)
    if tname == "BF16":
        return (data.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    b = data.reshape(-1, size)
    if tname == "Q4_0":
        x = _halves(b, 0) * (_nibbles(b[:, 2:18]) - 8)
    elif tname == "Q4_1":
        x = _halves(b, 0) * _nibbles(b[:, 4:20]) + _halves(b, 2)
    elif tname == "Q5_0":
        x = _halves(b, 0) * (_nibbles(b[:, 6:22]) + _fifth_bits(b[:, 2:6]) - 16)
    elif tname == "Q5_1":
        x = _halves(b, 0) * (_nibbles(b[:, 8:24]) + _fifth_bits(b[:, 4:8])) + _halves(b, 2)
    else:  # Q8_0
        x = _halves(b, 0) * b[:, 2:34].view(np.int8).astype(np.float32)
    return x.reshape(shape)
