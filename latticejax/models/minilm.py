"""all-MiniLM-L6-v2: a BERT encoder (arXiv 1810.04805) distilled by MiniLM (arXiv 2002.10957) and
fine-tuned as a Sentence-BERT embedder (arXiv 1908.10084), in Flax NNX, with a numpy safetensors
reader, a checkpoint loader and a small WordPiece tokenizer.

The encoder: word + position + token-type embeddings -> LayerNorm, then ``num_layers`` post-LN
blocks ``x = LN(x + Attn(x)); x = LN(x + W2 gelu(W1 x))`` (exact erf GELU), mean pooling over
the non-padding tokens and L2 normalisation. Every projection is an ``nnx.Linear`` computing
``y = x @ W + b`` with ``W (in, out)``, so `latticejax.quant.run_ptq` finds and quantizes them.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import unicodedata
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a ``.safetensors`` file with numpy only.

    Format: 8-byte little-endian unsigned header length ``n``, ``n`` bytes of JSON mapping each
    name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into the byte buffer
    after the header; ``"__metadata__"`` is skipped), then the raw little-endian tensors.

    Returns:
      name -> array of the stored shape and dtype (F64/F32/F16/I64/I32/I16/I8/U8/BOOL; BF16 is
      widened to float32).
    """
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise ValueError(f"path={str(path)!r}: {len(raw)} bytes, expected a safetensors file.")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"path={str(path)!r}: header length {n} exceeds file size {len(raw)}.")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    body = memoryview(raw)[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if info["dtype"] == "BF16":
            bits = np.frombuffer(body[begin:end], dtype="<u2").astype(np.uint32) << 16
            out[name] = bits.view(np.float32).reshape(shape)
            continue
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"tensor {name!r}: dtype {info['dtype']!r} not in {list(_DTYPES)}.")
        dt = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        arr = np.frombuffer(body[begin:end], dtype=dt)
        if arr.size != int(np.prod(shape)):
            raise ValueError(f"tensor {name!r}: {arr.size} elements for shape {shape}.")
        out[name] = arr.reshape(shape).astype(dt.newbyteorder("="))
    return out


# ----------------------------------------------------------------------------------- tokenizer


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


class WordPiece:
    """BERT's uncased WordPiece tokenizer (arXiv 1609.08144 §4.1, as used by arXiv 1810.04805).

    Basic step: NFD, drop combining marks (accents) and control characters, lower-case, split on
    whitespace and around every punctuation character. WordPiece step: greedy longest-match-first
    over the vocabulary, continuation pieces prefixed ``##``; a word with an unmatched remainder
    (or over ``max_chars`` characters) becomes ``[UNK]``. Sequences are ``[CLS] ... [SEP]``.

    Limits (vs. HuggingFace's BertTokenizer): CJK ideographs are not split into single characters,
    no ``never_split`` list, no sentence pairs (token type is always 0), truncation keeps the first
    ``max_len - 2`` pieces.

    Args:
      vocab: token -> id (``load_vocab``); must hold ``[CLS] [SEP] [UNK] [PAD]``.
    """

    def __init__(self, vocab: dict[str, int], *, max_chars: int = 100):
        missing = [t for t in ("[CLS]", "[SEP]", "[UNK]", "[PAD]") if t not in vocab]
        if missing:
            raise ValueError(f"vocab lacks the special tokens {missing}.")
        self.vocab, self.max_chars = vocab, max_chars

    @staticmethod
    def load_vocab(path: str | Path) -> dict[str, int]:
        """``vocab.txt`` (one token per line, id = line number) -> token -> id."""
        lines = Path(path).read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines = lines[:-1]
        return {t: i for i, t in enumerate(lines)}

    def basic_tokenize(self, text: str) -> list[str]:
        """Lower-cased, accent-stripped words and single punctuation characters."""
        text = unicodedata.normalize("NFD", text.lower())
        words, cur = [], []
        for ch in text:
            cat = unicodedata.category(ch)
            if cat == "Mn" or (cat.startswith("C") and ch not in "\t\n\r") or ord(ch) == 0xFFFD:
                continue
            if ch.isspace():
                if cur:
                    words.append("".join(cur))
                cur = []
            elif _is_punct(ch):
                if cur:
                    words.append("".join(cur))
                cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
        return words

    def wordpiece(self, word: str) -> list[str]:
        """Greedy longest-match-first pieces of one word, or ``["[UNK]"]``."""
        if len(word) > self.max_chars:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def encode(self, text: str, max_len: int = 128) -> list[int]:
        """``[CLS] pieces[: max_len - 2] [SEP]`` ids of one text."""
        pieces = [p for w in self.basic_tokenize(text) for p in self.wordpiece(w)]
        ids = [self.vocab[p] for p in pieces[: max_len - 2]]
        return [self.vocab["[CLS]"], *ids, self.vocab["[SEP]"]]

    def batch(self, texts: list[str], max_len: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded ``(ids (B, T) int32, mask (B, T) int32)``, ``T`` = longest, <= max_len."""
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2 (for [CLS] and [SEP]), got {max_len}.")
        rows = [self.encode(t, max_len) for t in texts]
        T = max(len(r) for r in rows)
        ids = np.full((len(rows), T), self.vocab["[PAD]"], np.int32)
        mask = np.zeros((len(rows), T), np.int32)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        return ids, mask


# ------------------------------------------------------------------------------------- encoder


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Sizes of the encoder; defaults are all-MiniLM-L6-v2's ``config.json``."""

    vocab_size: int = 30522
    hidden: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    type_vocab_size: int = 2
    eps: float = 1e-12


class _Block(nnx.Module):
    """One post-LN BERT block (arXiv 1810.04805 / 1706.03762)."""

    def __init__(self, c: BertConfig, *, rngs: nnx.Rngs):
        H = c.hidden
        self.num_heads = c.num_heads
        self.query = nnx.Linear(H, H, rngs=rngs)
        self.key = nnx.Linear(H, H, rngs=rngs)
        self.value = nnx.Linear(H, H, rngs=rngs)
        self.attn_out = nnx.Linear(H, H, rngs=rngs)
        self.attn_norm = nnx.LayerNorm(H, epsilon=c.eps, rngs=rngs)
        self.mlp_in = nnx.Linear(H, c.intermediate, rngs=rngs)
        self.mlp_out = nnx.Linear(c.intermediate, H, rngs=rngs)
        self.mlp_norm = nnx.LayerNorm(H, epsilon=c.eps, rngs=rngs)

    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        B, T, H = x.shape
        nh = self.num_heads
        split = lambda y: y.reshape(B, T, nh, H // nh)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(H // nh) + bias
        a = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, axis=-1), v).reshape(B, T, H)
        x = self.attn_norm(x + self.attn_out(a))
        return self.mlp_norm(x + self.mlp_out(jax.nn.gelu(self.mlp_in(x), approximate=False)))


class MiniLM(nnx.Module):
    """Sentence-embedding BERT encoder (all-MiniLM-L6-v2 with the default `BertConfig`).

    ``model(ids, mask) -> (B, T, hidden)`` token states; ``model.embed(ids, mask) -> (B, hidden)``
    mean-pooled, L2-normalised sentence embeddings (Sentence-BERT, arXiv 1908.10084).
    """

    def __init__(self, config: BertConfig = BertConfig(), *, rngs: nnx.Rngs):
        c = self.config = config
        self.word = nnx.Embed(c.vocab_size, c.hidden, rngs=rngs)
        self.position = nnx.Embed(c.max_positions, c.hidden, rngs=rngs)
        self.token_type = nnx.Embed(c.type_vocab_size, c.hidden, rngs=rngs)
        self.embed_norm = nnx.LayerNorm(c.hidden, epsilon=c.eps, rngs=rngs)
        self.layers = nnx.List([_Block(c, rngs=rngs) for _ in range(c.num_layers)])

    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        """Args: ids ``(B, T)`` int32 token ids; mask ``(B, T)`` 1 for tokens, 0 for padding.

        Returns: ``(B, T, hidden)`` float32 last-layer token states.
        """
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(f"ids and mask must both be (B, T), got {ids.shape}, {mask.shape}.")
        if ids.shape[1] > self.config.max_positions:
            raise ValueError(
                f"ids has T={ids.shape[1]} tokens, max_positions={self.config.max_positions}."
            )
        T = ids.shape[1]
        x = self.word(ids) + self.position(jnp.arange(T))[None] + self.token_type(0 * ids)
        x = self.embed_norm(x)
        # Padding keys get a large negative logit (HF BERT uses the dtype's min, same softmax).
        bias = jnp.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return x

    def embed(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        """``(B, hidden)`` float32 unit-norm sentence embeddings (masked mean, then L2)."""
        return pool(self(ids, mask), mask)


def pool(states: jax.Array, mask: jax.Array) -> jax.Array:
    """Masked mean over ``T`` of ``states (B, T, H)`` then L2 normalisation -> ``(B, H)``."""
    m = mask[..., None].astype(states.dtype)
    mean = jnp.sum(states * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1e-9)
    return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


def load_params(model: MiniLM, tensors: dict[str, np.ndarray]) -> None:
    """Copies a HuggingFace ``BertModel`` checkpoint (``read_safetensors``) into ``model``.

    Torch Linear weights ``(out, in)`` are transposed to ``(in, out)`` kernels; the pooler and
    ``position_ids`` are unused. Raises ``ValueError`` on a missing name or a shape mismatch.
    """
    t = {k.removeprefix("bert."): v for k, v in tensors.items()}

    def put(param: nnx.Param, name: str, transpose: bool = False) -> None:
        if name not in t:
            raise ValueError(f"checkpoint lacks {name!r} (has {len(t)} tensors).")
        v = np.asarray(t[name], np.float32)
        v = v.T if transpose else v
        if v.shape != param[...].shape:
            raise ValueError(f"{name!r}: checkpoint shape {v.shape}, model {param[...].shape}.")
        param[...] = jnp.asarray(v)

    def linear(layer: nnx.Linear, prefix: str) -> None:
        put(layer.kernel, f"{prefix}.weight", transpose=True)
        put(layer.bias, f"{prefix}.bias")

    def norm(layer: nnx.LayerNorm, prefix: str) -> None:
        put(layer.scale, f"{prefix}.weight")
        put(layer.bias, f"{prefix}.bias")

    put(model.word.embedding, "embeddings.word_embeddings.weight")
    put(model.position.embedding, "embeddings.position_embeddings.weight")
    put(model.token_type.embedding, "embeddings.token_type_embeddings.weight")
    norm(model.embed_norm, "embeddings.LayerNorm")
    for i, blk in enumerate(model.layers):
        p = f"encoder.layer.{i}"
        linear(blk.query, f"{p}.attention.self.query")
        linear(blk.key, f"{p}.attention.self.key")
        linear(blk.value, f"{p}.attention.self.value")
        linear(blk.attn_out, f"{p}.attention.output.dense")
        norm(blk.attn_norm, f"{p}.attention.output.LayerNorm")
        linear(blk.mlp_in, f"{p}.intermediate.dense")
        linear(blk.mlp_out, f"{p}.output.dense")
        norm(blk.mlp_norm, f"{p}.output.LayerNorm")


def from_pretrained(directory: str | Path) -> tuple[MiniLM, WordPiece]:
    """Model and tokenizer from a directory holding ``config.json``, ``model.safetensors`` and
    ``vocab.txt`` (the files of all-MiniLM-L6-v2)."""
    d = Path(directory)
    cfg = json.loads((d / "config.json").read_text())
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"config.json hidden_act={cfg['hidden_act']!r}, expected 'gelu'.")
    c = BertConfig(
        vocab_size=cfg["vocab_size"],
        hidden=cfg["hidden_size"],
        num_layers=cfg["num_hidden_layers"],
        num_heads=cfg["num_attention_heads"],
        intermediate=cfg["intermediate_size"],
        max_positions=cfg["max_position_embeddings"],
        type_vocab_size=cfg["type_vocab_size"],
        eps=cfg["layer_norm_eps"],
    )
    model = MiniLM(c, rngs=nnx.Rngs(0))
    load_params(model, read_safetensors(d / "model.safetensors"))
    return model, WordPiece(WordPiece.load_vocab(d / "vocab.txt"))
