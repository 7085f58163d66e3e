"""Pretrained models (Flax NNX) used as real targets for post-training quantization.

``minilm``: all-MiniLM-L6-v2 sentence encoder (BERT, arXiv 1810.04805; MiniLM, arXiv 2002.10957;
Sentence-BERT, arXiv 1908.10084), its safetensors loader and WordPiece tokenizer.
``smollm2``: SmolLM2-135M (Llama architecture, arXiv 2502.02737) from its GGUF file (``gguf``: a
numpy GGUF reader with the ggml block dequantizers), with its byte-level BPE tokenizer.
"""

from latticejax.models.minilm import (
    BertConfig,
    MiniLM,
    WordPiece,
    from_pretrained,
    load_params,
    pool,
    read_safetensors,
)

__all__ = [
    "BertConfig",
    "MiniLM",
    "WordPiece",
    "from_pretrained",
    "load_params",
    "pool",
    "read_safetensors",
]
