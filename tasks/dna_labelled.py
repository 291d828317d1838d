"""Labelled DNA sequences for ``task=dna_classify``, from two layouts:

- Genomic Benchmarks folders (Grešová et al. 2023): ``ROOT/train/<class>/*.txt`` and
  ``ROOT/test/<class>/*.txt``, one sequence per file (line breaks, CRLF and surrounding white space
  are ignored). The classes are the sub-folder names of ``train/``, sorted.
- Labelled FASTA: every record's header carries ``label=CLASS`` (``>seq17 label=promoter``); any
  line width, LF or CRLF line ends. The classes are the labels of the training file, sorted.

Bases are tokenized as in ``seqssm.genome`` (A, C, G, T, N; IUPAC codes read as N; lowercase
folded). An empty sequence, a missing label or a non-nucleotide character is a DataError naming
the file (and line).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from seqssm.errors import DataError
from seqssm.genome import tokenize


@dataclass
class Labelled:
    ids: torch.Tensor  # (L,) int64 token ids
    label: int
    source: str  # file (and record) it came from, for error messages


def read_folder_split(root: Path, split: str, classes: list[str] | None, key: str) -> tuple[list[Labelled], list[str]]:
    """The sequences of ``root/split/<class>/*.txt``; ``classes`` fixes the label order (from train)."""
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"{key}={root}: no {split}/ folder (expected {split}/<class>/*.txt, as Genomic Benchmarks)")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if classes is None:
        classes = found
    if len(classes) < 2:
        raise DataError(f"{key}={root}: {split}/ has {len(classes)} class folder(s), expected at least 2")
    extra = sorted(set(found) - set(classes))
    if extra:
        raise DataError(f"{key}={root}: {split}/{extra[0]} is not a class of train/ ({', '.join(classes)})")
    items = []
    for label, name in enumerate(classes):
        files = sorted((folder / name).glob("*.txt")) if (folder / name).is_dir() else []
        if not files:
            raise DataError(f"{key}={root}: no sequences in {split}/{name}/ (expected *.txt files)")
        for f in files:
            seq = "".join(f.read_text(encoding="ascii", errors="replace").split())
            if not seq:
                raise DataError(f"{key}={root}: {f.relative_to(root)} is empty, expected a DNA sequence")
            try:
                items.append(Labelled(tokenize(seq), label, str(f)))
            except DataError as e:
                raise DataError(f"{key}={root}: {f.relative_to(root)}: {e}") from None
    return items, classes


def parse_fasta(path: Path, key: str) -> list[tuple[str, str, int]]:
    """(header, sequence, line number of the header) of every record; LF or CRLF, any widths."""
    if not path.is_file():
        raise DataError(f"{key}={path}: no such file")
    records: list[tuple[str, list[str], int]] = []
    with open(path, encoding="ascii", errors="replace", newline=None) as f:  # newline=None: CRLF -> LF
        for n, line in enumerate(f, start=1):
            line = line.strip()
            if line.startswith(">"):
                records.append((line[1:].strip(), [], n))
            elif line:
                if not records:
                    raise DataError(f"{key}={path}: line {n}: sequence before the first '>' header (not FASTA)")
                records[-1][1].append(line)
    if not records:
        raise DataError(f"{key}={path}: no FASTA records (expected '>name label=CLASS' then sequence lines)")
    out = []
    for header, lines, n in records:
        if not lines:
            raise DataError(f"{key}={path}: line {n}: record {header.split()[0] if header else '?'!r} has no sequence")
        out.append((header, "".join(lines), n))
    return out


def read_labelled_fasta(path: Path, classes: list[str] | None, key: str) -> tuple[list[Labelled], list[str]]:
    """Records of a FASTA whose headers carry ``label=CLASS``; ``classes`` fixes the label order."""
    rows = []
    for header, seq, n in parse_fasta(path, key):
        labels = [w[len("label=") :] for w in header.split() if w.startswith("label=")]
        if not labels or not labels[0]:
            raise DataError(f"{key}={path}: line {n}: header {header!r} has no label (expected '>name label=CLASS')")
        try:
            rows.append((tokenize(seq), labels[0], f"{path}:{n}"))
        except DataError as e:
            raise DataError(f"{key}={path}: line {n}: {e}") from None
    if classes is None:
        classes = sorted({label for _, label, _ in rows})
        if len(classes) < 2:
            raise DataError(f"{key}={path}: {len(classes)} label(s) found, expected at least 2 classes")
    index = {c: i for i, c in enumerate(classes)}
    items = []
    for ids, label, where in rows:
        if label not in index:
            raise DataError(f"{key}={path}: {where}: label {label!r} is not a training class ({', '.join(classes)})")
        items.append(Labelled(ids, index[label], where))
    return items, classes
