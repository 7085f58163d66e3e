"""Tests for latticejax.models.gguf: a GGUF writer here, ggml block formats decoded element by
element in float64 from the spec, metadata of every value type, alignment, errors."""

import struct

import numpy as np
import pytest

from latticejax.models.gguf import GGML_TYPES, TYPE_IDS, dequantize, read_gguf

# ----------------------------------------------------------------------------- writer (test only)

_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_FMT.update({11: "<q", 12: "<d"})


def _s(x: str) -> bytes:
    b = x.encode()
    return struct.pack("<Q", len(b)) + b


def _value(vtype: int, v) -> bytes:
    if vtype == 8:
        return _s(v)
    if vtype == 9:
        etype, items = v
        return struct.pack("<IQ", etype, len(items)) + b"".join(_value(etype, x) for x in items)
    return struct.pack(_FMT[vtype], v)


def write_gguf(path, kv: dict, tensors: dict, *, alignment: int = 32, version: int = 3) -> None:
    """``kv``: key -> (value type, value); ``tensors``: name -> (shape, ggml type id, raw bytes)."""
    if alignment != 32:
        kv = {**kv, "general.alignment": (4, alignment)}
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv))
    for k, (t, v) in kv.items():
        head += _s(k) + struct.pack("<I", t) + _value(t, v)
    data, offsets = b"", []
    for _, _, raw in tensors.values():
        data += b"\0" * (-len(data) % alignment)
        offsets.append(len(data))
        data += raw
    for (name, (shape, t, _)), off in zip(tensors.items(), offsets):
        ne = list(reversed(shape))
        head += _s(name) + struct.pack(f"<I{len(ne)}QIQ", len(ne), *ne, t, off)
    head += b"\0" * (-len(head) % alignment)
    path.write_bytes(head + data)


def random_blocks(type_name: str, n: int, rng: np.random.Generator, scale: float = 1.0) -> bytes:
    """Valid random bytes for ``n`` values of a ggml type (fp16 scales of size ~0.1 * scale)."""
    _, block, size = GGML_TYPES[TYPE_IDS[type_name]]
    if type_name in ("F32", "F16", "F64"):
        dt = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}[type_name]
        return rng.standard_normal(n).astype(dt).tobytes()
    if type_name == "BF16":
        return (rng.standard_normal(n).astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
    nb = n // block
    raw = rng.integers(0, 256, (nb, size), dtype=np.uint8)
    n_half = {"Q4_0": 1, "Q5_0": 1, "Q8_0": 1, "Q4_1": 2, "Q5_1": 2}[type_name]
    for j in range(n_half):  # fp16 scale (and offset) in a sane range
        raw[:, 2 * j : 2 * j + 2] = (
            (scale * rng.uniform(0.01, 0.2, nb) * rng.choice([-1, 1], nb)).astype("<f2").view("<u1")
        ).reshape(nb, 2)
    return raw.tobytes()


def reference_dequant(type_name: str, raw: bytes) -> np.ndarray:
    """float64, one element at a time, following ggml-common.h's block structs."""
    if type_name in ("F32", "F16", "F64"):
        return np.frombuffer(raw, {"F32": "<f4", "F16": "<f2", "F64": "<f8"}[type_name]).astype(
            np.float64
        )
    if type_name == "BF16":
        return np.array(
            [struct.unpack("<f", b"\0\0" + raw[i : i + 2])[0] for i in range(0, len(raw), 2)]
        )
    _, block, size = GGML_TYPES[TYPE_IDS[type_name]]
    out = []
    for o in range(0, len(raw), size):
        blk = raw[o : o + size]
        d = struct.unpack("<e", blk[0:2])[0]
        m = struct.unpack("<e", blk[2:4])[0] if type_name in ("Q4_1", "Q5_1") else 0.0
        vals = [0.0] * 32
        if type_name == "Q8_0":
            vals = [d * struct.unpack("<b", blk[2 + j : 3 + j])[0] for j in range(32)]
        else:
            qh = {
                "Q5_0": struct.unpack("<I", blk[2:6])[0],
                "Q5_1": struct.unpack("<I", blk[4:8])[0],
            }
            qs = blk[{"Q4_0": 2, "Q4_1": 4, "Q5_0": 6, "Q5_1": 8}[type_name] :]
            for j in range(16):
                lo, hi = qs[j] & 0xF, qs[j] >> 4
                if type_name in qh:
                    lo |= ((qh[type_name] >> j) & 1) << 4
                    hi |= ((qh[type_name] >> (j + 16)) & 1) << 4
                off = {"Q4_0": 8, "Q5_0": 16}.get(type_name, 0)
                vals[j], vals[j + 16] = d * (lo - off) + m, d * (hi - off) + m
        out += vals
    return np.array(out, np.float64)


# ----------------------------------------------------------------------------------- tests

TYPES = ["F32", "F16", "BF16", "F64", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]


@pytest.mark.parametrize("type_name", TYPES)
def test_dequantize_matches_float64_spec(type_name):
    rng = np.random.default_rng(np.random.SeedSequence().entropy)
    shape = (3, 64)
    raw = random_blocks(type_name, 3 * 64, rng)
    got = dequantize(np.frombuffer(raw, np.uint8), TYPE_IDS[type_name], shape, name="w")
    ref = reference_dequant(type_name, raw).reshape(shape)
    assert got.shape == shape
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("alignment", [32, 64])
def test_file_metadata_and_tensors(tmp_path, alignment):
    rng = np.random.default_rng(np.random.SeedSequence().entropy)
    kv = {
        "general.architecture": (8, "llama"),
        "u8": (0, 200),
        "i8": (1, -5),
        "u16": (2, 60000),
        "i16": (3, -300),
        "u32": (4, 4_000_000_000),
        "i32": (5, -70000),
        "f32": (6, 0.5),
        "bool": (7, True),
        "u64": (10, 2**60),
        "i64": (11, -(2**50)),
        "f64": (12, 1e-300),
        "ints": (9, (5, [3, -1, 7])),
        "strings": (9, (8, ["a b", "Ġx", ""])),
        "nested": (9, (9, [(0, [1, 2]), (8, ["z"])])),
    }
    tensors = {}
    for name, t, shape in [
        ("a.weight", "Q4_1", (4, 64)),
        ("b.weight", "Q8_0", (2, 32)),
        ("norm", "F32", (7,)),
        ("cube", "F16", (2, 3, 5)),
    ]:
        tensors[name] = (shape, TYPE_IDS[t], random_blocks(t, int(np.prod(shape)), rng))
    path = tmp_path / "m.gguf"
    write_gguf(path, kv, tensors, alignment=alignment)
    g = read_gguf(path)
    assert g.version == 3 and g.data_offset % alignment == 0
    for k, (t, v) in kv.items():
        if t == 6:
            assert g.metadata[k] == pytest.approx(v)
        elif k == "ints":
            np.testing.assert_array_equal(g.metadata[k], v[1])
        elif k == "nested":
            np.testing.assert_array_equal(g.metadata[k][0], [1, 2])
            assert g.metadata[k][1] == ["z"]
        elif t == 9:
            assert g.metadata[k] == v[1]
        else:
            assert g.metadata[k] == v
    assert list(g.tensors) == list(tensors)
    for name, (shape, t, raw) in tensors.items():
        info = g.tensors[name]
        assert info.shape == shape and info.ggml_type == t and info.offset % alignment == 0
        ref = reference_dequant(GGML_TYPES[t][0], raw).reshape(shape)
        np.testing.assert_allclose(g.tensor(name), ref, rtol=1e-6, atol=1e-7)


def test_version_2(tmp_path):
    path = tmp_path / "v2.gguf"
    write_gguf(path, {"k": (8, "v")}, {"x": ((32,), 0, np.ones(32, "<f4").tobytes())}, version=2)
    g = read_gguf(path)
    assert g.version == 2 and g.metadata == {"k": "v"}
    np.testing.assert_array_equal(g.tensor("x"), np.ones(32))


def test_clear_errors(tmp_path):
    good = tmp_path / "good.gguf"
    write_gguf(good, {}, {"x": ((32,), 0, np.ones(32, "<f4").tobytes())})
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + good.read_bytes()[4:])
    with pytest.raises(ValueError, match="magic"):
        read_gguf(bad)
    write_gguf(bad, {}, {}, version=1)
    with pytest.raises(ValueError, match="version 1"):
        read_gguf(bad)
    # Q4_K (id 12) is not read: the error names the tensor and the type id.
    write_gguf(bad, {}, {"blk.0.attn_q.weight": ((256,), 12, b"\0" * 144)})
    with pytest.raises(ValueError, match=r"'blk.0.attn_q.weight'.*type id 12"):
        read_gguf(bad)
    bad.write_bytes(good.read_bytes()[:-8])
    with pytest.raises(ValueError, match="exceed the file size"):
        read_gguf(bad)
    bad.write_bytes(good.read_bytes()[:20])
    with pytest.raises(ValueError, match="truncated"):
        read_gguf(bad)
    with pytest.raises(ValueError, match="expected 68"):
        dequantize(np.zeros(35, np.uint8), TYPE_IDS["Q8_0"], (64,), name="w")
    with pytest.raises(KeyError, match="'nope'"):
        read_gguf(good).tensor("nope")
