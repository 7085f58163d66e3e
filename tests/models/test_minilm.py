"""Tests for latticejax.models.minilm: BERT forward vs float64 numpy, safetensors, WordPiece."""

import json
import math
import struct

import numpy as np
from flax import nnx

from latticejax.models.minilm import BertConfig, MiniLM, WordPiece, load_params, read_safetensors


def _random_checkpoint(c: BertConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """HuggingFace BertModel names with torch (out, in) Linear weights."""
    H, F = c.hidden, c.intermediate
    r = lambda *s: (0.3 * rng.standard_normal(s)).astype(np.float32)
    t = {
        "embeddings.word_embeddings.weight": r(c.vocab_size, H),
        "embeddings.position_embeddings.weight": r(c.max_positions, H),
        "embeddings.token_type_embeddings.weight": r(c.type_vocab_size, H),
        "embeddings.LayerNorm.weight": 1 + r(H),
        "embeddings.LayerNorm.bias": r(H),
    }
    for i in range(c.num_layers):
        p = f"encoder.layer.{i}"
        for name, (o, n) in {
            "attention.self.query": (H, H),
            "attention.self.key": (H, H),
            "attention.self.value": (H, H),
            "attention.output.dense": (H, H),
            "intermediate.dense": (F, H),
            "output.dense": (H, F),
        }.items():
            t[f"{p}.{name}.weight"] = r(o, n) / math.sqrt(n) * 3
            t[f"{p}.{name}.bias"] = r(o)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[f"{p}.{name}.weight"] = 1 + r(H)
            t[f"{p}.{name}.bias"] = r(H)
    return t


def _numpy_bert(t, c, ids, mask):
    """Independent float64 BERT forward + mean pooling + L2 (torch weight layout)."""
    g = {k: v.astype(np.float64) for k, v in t.items()}
    erf = np.vectorize(math.erf)

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + c.eps) * g[p + ".weight"] + g[p + ".bias"]

    lin = lambda x, p: x @ g[p + ".weight"].T + g[p + ".bias"]
    B, T = ids.shape
    x = g["embeddings.word_embeddings.weight"][ids]
    x = (
        x
        + g["embeddings.position_embeddings.weight"][:T]
        + g["embeddings.token_type_embeddings.weight"][0]
    )
    x = ln(x, "embeddings.LayerNorm")
    nh, dh = c.num_heads, c.hidden // c.num_heads
    for i in range(c.num_layers):
        p = f"encoder.layer.{i}."
        out = np.zeros_like(x)
        for b in range(B):
            for h in range(nh):
                sl = slice(h * dh, (h + 1) * dh)
                q = lin(x[b], p + "attention.self.query")[:, sl]
                k = lin(x[b], p + "attention.self.key")[:, sl]
                v = lin(x[b], p + "attention.self.value")[:, sl]
                s = q @ k.T / math.sqrt(dh)
                s[:, mask[b] == 0] = -np.inf
                a = np.exp(s - s.max(-1, keepdims=True))
                out[b, :, sl] = (a / a.sum(-1, keepdims=True)) @ v
        x = ln(x + lin(out, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        u = lin(x, p + "intermediate.dense")
        u = 0.5 * u * (1 + erf(u / math.sqrt(2)))
        x = ln(x + lin(u, p + "output.dense"), p + "output.LayerNorm")
    m = mask[..., None].astype(np.float64)
    e = (x * m).sum(1) / m.sum(1)
    return x, e / np.linalg.norm(e, axis=-1, keepdims=True)


def test_encoder_matches_float64_numpy():
    rng = np.random.default_rng(np.random.SeedSequence().entropy)
    c = BertConfig(
        vocab_size=50, hidden=32, num_layers=2, num_heads=4, intermediate=64, max_positions=16
    )
    t = _random_checkpoint(c, rng)
    model = MiniLM(c, rngs=nnx.Rngs(1))
    load_params(model, t)
    ids = rng.integers(0, c.vocab_size, (3, 7)).astype(np.int32)
    mask = np.ones((3, 7), np.int32)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    ref_states, ref_emb = _numpy_bert(t, c, ids, mask)
    states = np.asarray(model(ids, mask))
    valid = mask.astype(bool)
    np.testing.assert_allclose(states[valid], ref_states[valid], atol=1e-5, rtol=1e-5)
    emb = np.asarray(model.embed(ids, mask))
    np.testing.assert_allclose(emb, ref_emb, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-6)


def test_safetensors_round_trip(tmp_path):
    rng = np.random.default_rng(np.random.SeedSequence().entropy)
    tensors = {
        "a.weight": rng.standard_normal((3, 5)).astype(np.float32),
        "b": rng.integers(-(2**40), 2**40, (4,)).astype(np.int64),
        "c.half": rng.standard_normal((2, 2, 2)).astype(np.float16),
        "d": rng.standard_normal(()).astype(np.float64),
    }
    codes = {np.float32: "F32", np.int64: "I64", np.float16: "F16", np.float64: "F64"}
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, v in tensors.items():
        b = v.astype(v.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": codes[v.dtype.type],
            "shape": list(v.shape),
            "data_offsets": [off, off + len(b)],
        }
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header).encode()
    hj += b" " * (-len(hj) % 8)
    path = tmp_path / "t.safetensors"
    path.write_bytes(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
    back = read_safetensors(path)
    assert sorted(back) == sorted(tensors)
    for name, v in tensors.items():
        assert back[name].dtype == v.dtype and back[name].shape == v.shape
        np.testing.assert_array_equal(back[name], v)


def test_wordpiece_hand_computed_ids():
    tokens = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "un",
        "##aff",
        "##able",
        "run",
        "##ning",
        "cafe",
        ",",
        "!",
        "the",
        "##s",
        "s",
        "'",
    ]
    tok = WordPiece({t: i for i, t in enumerate(tokens)})
    assert tok.basic_tokenize("Unaffable, the CAFÉ's!") == [
        "unaffable",
        ",",
        "the",
        "cafe",
        "'",
        "s",
        "!",
    ]
    # unaffable -> un ##aff ##able; "runnings" -> run ##ning ##s; "xyz" -> [UNK].
    assert tok.encode("Unaffable, the CAFÉ's!") == [2, 4, 5, 6, 10, 12, 9, 15, 14, 11, 3]
    assert tok.encode("runnings xyz") == [2, 7, 8, 13, 1, 3]
    assert tok.encode("running running running", max_len=4) == [2, 7, 8, 3]
    ids, mask = tok.batch(["the", "cafe, the"])
    np.testing.assert_array_equal(ids, [[2, 12, 3, 0, 0], [2, 9, 10, 12, 3]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
