"""``python -m data_prep.text --dataset wikitext103|enwik8 --out DIR [--archive FILE]``

Downloads (or takes ``--archive``, a copy already on disk) and verifies a text corpus, then writes
``DIR/train.txt``, ``DIR/valid.txt``, ``DIR/test.txt`` and ``DIR/SOURCE.json`` (where it came from,
checksums). ``task=lm task.data.path=DIR`` trains on train.txt and validates on valid.txt.

* enwik8 (Hutter Prize; Mahoney 2006): the first 10^8 bytes of an English Wikipedia XML dump,
  split 90M / 5M / 5M bytes as in the character-level LM literature (e.g. Al-Rfou et al. 2019,
  Transformer-XL). The extracted file is checked against its size and SHA-1.
* wikitext103 (Merity et al. 2016), raw (untokenized) version: the archive's wiki.{train,valid,test}.raw.
  The archive is checked against its size and MD5.

Every file is written atomically (temporary name, then rename), so an interrupted run leaves no
half-written corpus.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from seqssm.errors import DataError, SeqssmError
from seqssm.io import atomic_path, write_json


@dataclass
class Corpus:
    url: str
    archive_name: str
    # Checksums: (algorithm, hex digest, size in bytes) of the archive, and of members of it.
    archive_check: tuple[str, str, int] | None
    member_checks: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    # split name -> (member of the archive, first byte, end byte or None)
    splits: dict[str, tuple[str, int, int | None]] = field(default_factory=dict)


CORPORA = {
    "enwik8": Corpus(
        url="http://mattmahoney.net/dc/enwik8.zip",
        archive_name="enwik8.zip",
        archive_check=None,
        member_checks={"enwik8": ("sha1", "57b8363b814821dc9d47aa4d41f58733519076b2", 100_000_000)},
        splits={
            "train": ("enwik8", 0, 90_000_000),
            "valid": ("enwik8", 90_000_000, 95_000_000),
            "test": ("enwik8", 95_000_000, 100_000_000),
        },
    ),
    "wikitext103": Corpus(
        url="https://wikitext.smerity.com/wikitext-103-raw-v1.zip",
        archive_name="wikitext-103-raw-v1.zip",
        archive_check=("md5", "0ca3512bd7a238be4a63ce7b434f8935", 191_984_949),
        splits={
            "train": ("wikitext-103-raw/wiki.train.raw", 0, None),
            "valid": ("wikitext-103-raw/wiki.valid.raw", 0, None),
            "test": ("wikitext-103-raw/wiki.test.raw", 0, None),
        },
    ),
}


def digest(read_chunks, algorithm: str) -> tuple[str, int]:
    h, n = hashlib.new(algorithm), 0
    for chunk in read_chunks:
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def _chunks(f, size: int = 1 << 20):
    while chunk := f.read(size):
        yield chunk


def verify(name: str, check: tuple[str, str, int], opener) -> None:
    """Raise DataError unless the bytes from ``opener()`` have the expected size and digest."""
    algorithm, expected, size = check
    with opener() as f:
        got, n = digest(_chunks(f), algorithm)
    if n != size or got != expected:
        raise DataError(
            f"{name}: {algorithm} {got} ({n:,} bytes), expected {expected} ({size:,} bytes): "
            "a corrupt or different file; delete it and download again"
        )


def download(url: str, dest: Path) -> None:
    print(f"data_prep: downloading {url}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, atomic_path(dest) as tmp, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except OSError as e:
        raise DataError(f"--dataset: cannot download {url} ({e}); download it by hand, pass --archive FILE") from None


def prepare(corpus: Corpus, archive: Path, out: Path) -> dict:
    """Verify ``archive`` and write the splits into ``out``; returns what SOURCE.json records."""
    if not archive.is_file():
        raise DataError(f"--archive={archive}: no such file")
    if corpus.archive_check:
        verify(f"--archive={archive}", corpus.archive_check, lambda: open(archive, "rb"))
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise DataError(f"--archive={archive}: not a zip archive") from None
    with zf:
        names = set(zf.namelist())
        for member in {m for m, _, _ in corpus.splits.values()} | set(corpus.member_checks):
            if member not in names:
                raise DataError(f"--archive={archive}: has no member {member!r} (expected {corpus.archive_name})")
        for member, check in corpus.member_checks.items():
            verify(f"--archive={archive}:{member}", check, lambda m=member: zf.open(m))
        sizes = {}
        for split, (member, start, end) in corpus.splits.items():
            with zf.open(member) as src, atomic_path(out / f"{split}.txt") as tmp, open(tmp, "wb") as dst:
                left = None if end is None else end - start
                src.read(start)
                while left is None or left > 0:
                    chunk = src.read(1 << 20 if left is None else min(1 << 20, left))
                    if not chunk:
                        break
                    dst.write(chunk)
                    left = None if left is None else left - len(chunk)
            sizes[split] = (out / f"{split}.txt").stat().st_size
    return {"archive": archive.name, "url": corpus.url, "archive_check": corpus.archive_check,
            "member_checks": corpus.member_checks, "split_bytes": sizes}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_prep.text", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(CORPORA))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--archive", type=Path, help="use this copy of the archive instead of downloading it")
    args = parser.parse_args(argv)
    corpus = CORPORA[args.dataset]
    try:
        if args.archive:
            info = prepare(corpus, args.archive, args.out)
        else:
            with tempfile.TemporaryDirectory(dir=args.out.parent if args.out.parent.exists() else None) as d:
                archive = Path(d) / corpus.archive_name
                download(corpus.url, archive)
                info = prepare(corpus, archive, args.out)
        write_json(args.out / "SOURCE.json", {"dataset": args.dataset, **info})
    except SeqssmError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"data_prep: wrote {', '.join(f'{k}.txt ({v:,} bytes)' for k, v in info['split_bytes'].items())} "
          f"to {args.out}")


if __name__ == "__main__":
    main()
