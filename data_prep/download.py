"""Download helpers for ``data_prep``: resumable downloads with a progress line, checksums, gunzip.

- ``fetch(url, dest, checksum)``: when ``dest`` exists and matches ``checksum``, nothing is downloaded.
  Otherwise bytes go to ``dest.part``; an interrupted download resumes from the end of the ``.part``
  file (HTTP ``Range`` request; a server that ignores Range gets a fresh start), and only a file whose
  checksum matches is renamed to ``dest``. ``url`` may be ``http(s)://``, ``file://`` or a local path
  (the tests use local files only).
- ``Checksum("sha256" | "md5" | "sha1", hexdigest)``; ``hexdigest=None`` accepts any file and records
  the digest (for sources that publish none).
- ``gunzip(src, dest)``: streamed, written through a temporary file and a rename.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from seqssm.errors import DataError
from seqssm.io import atomic_path

CHUNK = 1 << 20


@dataclass
class Checksum:
    algorithm: str  # a hashlib name: sha256, md5, sha1
    hexdigest: str | None  # None: not published; accept and record

    def of(self, path: Path) -> str:
        h = hashlib.new(self.algorithm)
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def matches(self, path: Path) -> bool:
        return self.hexdigest is None or self.of(path) == self.hexdigest.lower()


class Progress:
    """One line on stderr, rewritten at most every 0.5 s: bytes, percent, rate."""

    def __init__(self, name: str, total: int | None, done: int = 0, stream=sys.stderr) -> None:
        self.name, self.total, self.done, self.stream = name, total, done, stream
        self.start, self.last, self.first = time.time(), 0.0, done

    def update(self, n: int) -> None:
        self.done += n
        if time.time() - self.last > 0.5:
            self.show()

    def show(self, end: str = "\r") -> None:
        self.last = time.time()
        rate = (self.done - self.first) / max(1e-9, self.last - self.start)
        pct = f" {100 * self.done / self.total:5.1f}%" if self.total else ""
        total = f"/{self.total / 1e6:,.1f}" if self.total else ""
        print(f"{self.name}: {self.done / 1e6:,.1f}{total} MB{pct} ({rate / 1e6:.1f} MB/s)", end=end, file=self.stream)


def _open(url: str, offset: int):
    """(response-like, total size or None, whether it starts at ``offset``)."""
    scheme = urlparse(url).scheme
    if scheme in ("", "file"):
        path = Path(urlparse(url).path if scheme == "file" else url).expanduser()
        if not path.is_file():
            raise DataError(f"{url}: no such file")
        f = open(path, "rb")
        f.seek(offset)
        return f, path.stat().st_size, True
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        r = urllib.request.urlopen(request, timeout=60)
    except OSError as e:
        raise DataError(
            f"cannot download {url} ({e}); download it by hand into the --out folder and run again"
        ) from None
    resumed = offset > 0 and r.status == 206
    length = r.headers.get("Content-Length")
    total = int(length) + (offset if resumed else 0) if length else None
    return r, total, resumed or offset == 0


def fetch(url: str, dest: Path, checksum: Checksum, progress: bool = True) -> str:
    """Make ``dest`` a verified copy of ``url``; returns the file's digest. See the module docstring."""
    dest = Path(dest)
    if dest.is_file():
        if checksum.matches(dest):
            print(f"data_prep: {dest} already present and verified: nothing to do", file=sys.stderr)
            return checksum.of(dest)
        raise DataError(
            f"{dest}: present but its {checksum.algorithm} is {checksum.of(dest)}, expected {checksum.hexdigest}; "
            "delete it to download it again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    src, total, resumed = _open(url, offset)
    if not resumed:  # the server sends the whole file again
        offset = 0
    if offset and total is not None and offset >= total:
        src.close()
    else:
        bar = Progress(dest.name, total, offset) if progress else None
        with src, open(part, "ab" if offset else "wb") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)
                if bar:
                    bar.update(len(chunk))
        if bar:
            bar.show(end="\n")
    got = checksum.of(part)
    if checksum.hexdigest is not None and got != checksum.hexdigest.lower():
        part.unlink()
        raise DataError(
            f"{url}: downloaded file has {checksum.algorithm} {got}, expected {checksum.hexdigest} "
            "(corrupt or changed upstream); removed it, run again to retry"
        )
    os.replace(part, dest)
    return got


def gunzip(src: Path, dest: Path, progress: bool = True) -> None:
    """Decompress ``src`` (gzip or bgzip) into ``dest`` atomically."""
    bar = Progress(dest.name, None) if progress else None
    try:
        with gzip.open(src, "rb") as f, atomic_path(dest) as tmp, open(tmp, "wb") as out:
            while chunk := f.read(CHUNK):
                out.write(chunk)
                if bar:
                    bar.update(len(chunk))
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{src}: cannot decompress ({type(e).__name__}: {e}); delete it and run again") from None
    if bar:
        bar.show(end="\n")
