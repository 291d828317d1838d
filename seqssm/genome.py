"""Genome access: FASTA files through pyfaidx, checked up front, and the nucleotide tokenizer.

Tokens: A=0, C=1, G=2, T=3, N=4 (any other IUPAC code, e.g. R or Y, reads as N), PAD=5.
Soft-masked (lowercase) bases are folded to uppercase. The reverse complement maps
A<->T, C<->G, N->N and reverses the order.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
import pyfaidx
import torch

from seqssm.errors import DataError

BASES = "ACGTN"
PAD = 5
VOCAB_SIZE = 6
IUPAC = "ACGTNRYSWKMBDHVU"

_LUT = np.full(256, 255, dtype=np.uint8)  # 255: not a nucleotide letter
for _c in IUPAC:
    _LUT[ord(_c)] = _LUT[ord(_c.lower())] = BASES.index(_c) if _c in BASES else BASES.index("N")
_LUT[ord("U")] = _LUT[ord("u")] = BASES.index("T")
_COMPLEMENT = torch.tensor([3, 2, 1, 0, 4, PAD])


def embedded_genome(name: str = "hg38_chrM") -> Path:
    """Path of a FASTA shipped with the package: hg38_chrM (default), mm10_chrM, danRer10_chrM."""
    path = Path(str(resources.files("seqssm") / "data" / "mito" / f"{name}.fa"))
    if not path.exists():
        raise DataError(f"embedded genome {name!r} not found at {path}")
    return path


def _codes(seq: str | bytes) -> tuple[np.ndarray, int]:
    """(token ids as uint8 with 255 for a non-nucleotide character, index of the first such character or -1)."""
    raw = np.frombuffer(seq.encode("ascii", "replace") if isinstance(seq, str) else seq, dtype=np.uint8)
    ids = _LUT[raw]
    bad = ids == 255
    return ids, int(np.argmax(bad)) if bad.any() else -1


def tokenize(seq: str | bytes) -> torch.Tensor:
    """Bases -> int64 token ids. Raises DataError on a character that is not a nucleotide code."""
    ids, i = _codes(seq)
    if i >= 0:
        raise DataError(f"character {seq[i:i + 1]!r} at position {i} is not a nucleotide "
                        f"(expected one of {IUPAC}, any case)")  # fmt: skip
    return torch.from_numpy(ids.astype(np.int64))


def reverse_complement(ids: torch.Tensor) -> torch.Tensor:
    """Reverse complement of token ids along the last axis (PAD stays PAD)."""
    return _COMPLEMENT.to(ids.device)[ids].flip(-1)


def check_fasta(path: str | os.PathLike, key: str = "task.data.fasta") -> Path:
    """Fail early and clearly on a missing file or one that is not FASTA."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{key}={path}: no such file")
    if p.is_dir():
        raise DataError(f"{key}={path}: is a directory, expected a FASTA file")
    with open(p, "rb") as f:
        head = f.read(4096).lstrip()
    if not head:
        raise DataError(f"{key}={path}: the file is empty, expected FASTA ('>name' then sequence lines)")
    if not head.startswith(b">"):
        raise DataError(f"{key}={path}: not a FASTA file (expected a first line starting with '>')")
    return p


class Genome:
    """Random access to the records of a FASTA file. Opens pyfaidx lazily in each process, so it
    is safe to use from DataLoader workers; builds the ``.fai`` index next to the file if needed
    (or keeps an existing one when ``rebuild_index`` is false, as for the read-only shipped data).
    """

    def __init__(self, path: str | os.PathLike, key: str = "task.data.fasta", rebuild_index: bool = True):
        self.path = check_fasta(path, key)
        self.key, self.rebuild_index = key, rebuild_index
        self._fasta: pyfaidx.Fasta | None = None
        self._pid = -1
        fa = self._open()
        self.lengths = {name: len(fa[name]) for name in fa.keys()}
        empty = [n for n, length in self.lengths.items() if length == 0]
        if empty:
            raise DataError(f"{key}={self.path}: record {empty[0]!r} has no sequence")
        self._check_line_widths(fa)

    def _check_line_widths(self, fa: pyfaidx.Fasta) -> None:
        """pyfaidx rejects a short line inside a record but not a last line longer than the others, and
        then reads wrong bytes. Check that every record's last base is where the index says: a base
        followed by a line end (LF or CRLF) or the end of the file. One seek per record."""
        with open(self.path, "rb") as f:
            for name, rec in fa.faidx.index.items():
                last = rec.offset + (rec.rlen - 1) // rec.lenc * rec.lenb + (rec.rlen - 1) % rec.lenc
                f.seek(last)
                two = f.read(2)
                if not two or two[:1] in b"\r\n>" or two[1:] not in b"\r\n":
                    raise DataError(
                        f"{self.key}={self.path}: record {name!r} has lines of different widths (every line of a "
                        f"record but its last must have the same length; the last may be shorter, not longer)"
                    )

    def _open(self) -> pyfaidx.Fasta:
        if self._fasta is None or self._pid != os.getpid():
            try:
                self._fasta = pyfaidx.Fasta(
                    str(self.path), as_raw=True, sequence_always_upper=True, rebuild=self.rebuild_index
                )
            # pyfaidx signals malformed input with several exception types (FastaIndexingError, ValueError,
            # and a RuntimeError for some blank-line layouts, found by tests/test_fuzz_loaders.py).
            except Exception as e:  # noqa: BLE001 - the boundary to a third-party parser
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise DataError(f"{self.key}={self.path}: malformed FASTA: {msg}") from None
            self._pid = os.getpid()
        return self._fasta

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fasta": None, "_pid": -1}

    def fetch(self, name: str, start: int, end: int) -> torch.Tensor:
        """Token ids of bases [start, end) of record ``name`` (0-based, end exclusive)."""
        if name not in self.lengths:
            raise DataError(f"{self.key}={self.path}: no record named {name!r}")
        if not 0 <= start <= end <= self.lengths[name]:
            raise DataError(
                f"{self.key}={self.path}: interval {name}:{start}-{end} is outside the record "
                f"(length {self.lengths[name]})"
            )
        where = f"{self.key}={self.path}: record {name!r}"
        try:
            seq = self._open()[name][start:end]
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - pyfaidx's read errors (the file changed or vanished)
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(f"{where}: cannot read {name}:{start}-{end} ({msg})") from None
        if len(seq) != end - start:
            raise DataError(
                f"{where}: read {len(seq)} of the {end - start} bases {name}:{start}-{end} "
                "(the file is shorter than its .fai index says: did it change after the run started?)"
            )
        ids, i = _codes(seq)
        if i >= 0:
            base = start + i
            rec = self._open().faidx.index[name]
            offset = rec.offset + base // rec.lenc * rec.lenb + base % rec.lenc
            raise DataError(
                f"{where}, base {base} (byte offset {offset}): character {seq[i]!r} is not a nucleotide "
                f"(expected one of {IUPAC}, any case)"
            )
        return torch.from_numpy(ids.astype(np.int64))
