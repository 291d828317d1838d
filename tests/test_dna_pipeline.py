"""task=dna with a BED of intervals on a synthetic multi-chromosome genome: windows never cross a
chromosome end, splits are respected, stretching near ends, RC augmentation, the length warmup
schedule, seeded determinism, and clear errors for bad BED and FASTA input."""

import re

import numpy as np
import pytest
import torch

from seqssm.config import to_dataclass
from seqssm.errors import ConfigError, DataError
from seqssm.genome import Genome, tokenize
from seqssm.tasks.dna import DNAConfig, DNADataConfig, DNADataModule
from seqssm.tasks.dna_regions import LengthSchedule, LengthStage, place_window, read_bed

CHROMS = {"chr1": 3000, "chr2": 700, "chrX": 1500}


def genome_files(tmp_path, bed_lines: list[str]) -> tuple[str, str, dict[str, str]]:
    rng = np.random.default_rng(0)
    seqs = {n: "".join("ACGT"[i] for i in rng.integers(0, 4, size)) for n, size in CHROMS.items()}
    with open(tmp_path / "g.fa", "w") as f:
        for name, seq in seqs.items():
            f.write(f">{name}\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n")
    (tmp_path / "g.bed").write_text("".join(line + "\n" for line in bed_lines))
    return str(tmp_path / "g.fa"), str(tmp_path / "g.bed"), seqs


BED = [
    "# HyenaDNA layout: chrom start end split",
    "chr1\t0\t1200\ttrain",
    "chr1\t1200\t1500\tvalid",
    "chr1\t2900\t3000\ttrain",  # 100 bases at the chromosome's end: windows are stretched, leftwards
    "chr2\t10\t60\ttrain",  # near the start: stretched rightwards
    "chrX\t0\t1000\ttrain",
    "chrX\t1000\t1500\ttest",
]


def locate(window: str, seqs: dict[str, str]) -> list[tuple[str, int]]:
    return [(n, s.find(window)) for n, s in seqs.items() if window in s]


def test_bed_windows_stay_inside_chromosomes_and_splits(tmp_path):
    fasta, bed, seqs = genome_files(tmp_path, BED)
    cfg = DNADataConfig(fasta=fasta, bed=bed, max_len=255, batch_size=8, windows_per_epoch=240)
    dm = DNADataModule(cfg, seed=0)
    assert dm.val_regions == [("chr1", 1200, 1500)]
    assert ("chrX", 1000, 1500) not in dm.train_regions  # the test split is used for nothing
    seen_end = seen_start = 0
    for i in range(len(dm.train_set)):
        batch = dm.train_set[i]
        assert batch["inputs"].shape == (8, 255) and bool(batch["mask"].all())  # every window is full length
        for inp, tgt in zip(batch["inputs"], batch["targets"], strict=True):
            window = "".join("ACGT"[t] for t in [int(inp[0]), *tgt.tolist()])
            ((name, s),) = locate(window, seqs)  # a real piece of one chromosome: never crosses an end
            assert 0 <= s and s + 256 <= CHROMS[name]
            # it overlaps a training interval
            assert any(n == name and s < e and st < s + 256 for n, st, e in dm.train_regions)
            seen_end += name == "chr1" and s == 3000 - 256
            seen_start += name == "chr2" and s == 0
    assert seen_end > 0 and seen_start > 0  # short intervals near the ends were stretched inside
    # validation tiles the valid interval only
    targets = sum(int(dm.val_set[i]["mask"].sum()) for i in range(len(dm.val_set)))
    assert targets == 300 - 1


def test_bed_windows_are_seeded_and_rc_augmented(tmp_path):
    fasta, bed, seqs = genome_files(tmp_path, BED)
    cfg = DNADataConfig(fasta=fasta, bed=bed, max_len=63, batch_size=16, windows_per_epoch=64, rc_aug=True)
    a, b, c = DNADataModule(cfg, seed=5), DNADataModule(cfg, seed=5), DNADataModule(cfg, seed=6)
    assert all(torch.equal(a.train_set[i]["inputs"], b.train_set[i]["inputs"]) for i in range(4))
    assert not torch.equal(a.train_set[0]["inputs"], c.train_set[0]["inputs"])
    comp = str.maketrans("ACGT", "TGCA")
    fwd = rc = 0
    for i in range(4):
        batch = a.train_set[i]
        for inp, tgt in zip(batch["inputs"], batch["targets"], strict=True):
            w = "".join("ACGT"[t] for t in [int(inp[0]), *tgt.tolist()])
            fwd += bool(locate(w, seqs))
            rc += bool(locate(w[::-1].translate(comp), seqs)) and not locate(w, seqs)
    assert fwd + rc == 64 and 16 < rc < 48


def test_length_warmup_grows_windows_during_one_run(tmp_path):
    fasta, bed, _ = genome_files(tmp_path, BED)
    stages = [LengthStage(max_len=16, steps=3, batch_size=32), LengthStage(max_len=64, steps=2)]
    cfg = DNADataConfig(fasta=fasta, bed=bed, max_len=256, batch_size=4, windows_per_epoch=16, length_warmup=stages)
    dm = DNADataModule(cfg, seed=0)
    assert len(dm.train_set) == 4  # batches per epoch
    shapes = []
    for epoch in range(2):
        dm.set_epoch(epoch)
        shapes += [tuple(dm.train_set[i]["inputs"].shape) for i in range(4)]
    assert shapes == [(32, 16)] * 3 + [(4, 64)] * 2 + [(4, 256)] * 3
    sched = LengthSchedule(stages, 256, 4)
    assert sched.windows_before(0, 4) == 3 * 32 + 4 and sched.windows_before(4, 8) == 4 + 3 * 4
    # the schedule from the command line, through Hydra-style config
    task_cfg = to_dataclass(DNAConfig, {"data": {"length_warmup": [{"max_len": 8, "steps": 5}]}}, "task")
    assert task_cfg.data.length_warmup[0].max_len == 8
    with pytest.raises(ConfigError, match=r"length_warmup\[0\]"):
        to_dataclass(DNAConfig, {"data": {"length_warmup": [{"max_len": 1, "steps": 5}]}}, "task")


def test_place_window_rules():
    rng = np.random.default_rng(0)
    assert place_window(rng, 0, 50, 100, 1000, stretch=True) == (0, 100)
    assert place_window(rng, 950, 1000, 100, 1000, stretch=True) == (900, 1000)
    assert place_window(rng, 500, 520, 100, 1000, stretch=True) == (460, 560)
    assert place_window(rng, 0, 50, 100, 60, stretch=True) == (0, 60)  # chromosome shorter than the window
    assert place_window(rng, 10, 50, 100, 1000, stretch=False) == (10, 50)
    s, e = place_window(rng, 100, 400, 100, 1000, stretch=True)
    assert 100 <= s and e <= 400 and e - s == 100


@pytest.mark.parametrize(
    "line, message",
    [
        ("chr2\t600\t701\ttrain", "ends past the end of chr2 (700 bases)"),
        ("chr7\t0\t100\ttrain", "chromosome 'chr7' is not in the FASTA"),
        ("chr1\t100\t100\ttrain", "empty or negative"),
        ("chr1\t-5\t100\ttrain", "empty or negative"),
        ("chr1\tten\t100\ttrain", "must be integers"),
        ("chr1\t0\t100", "3 columns, expected chrom, start, end, split"),
    ],
)
def test_bad_bed_lines(tmp_path, line, message):
    fasta, bed, _ = genome_files(tmp_path, [*BED, line])
    with pytest.raises(DataError, match=f"task.data.bed=.*line {len(BED) + 1}: .*{re.escape(message)}"):
        DNADataModule(DNADataConfig(fasta=fasta, bed=bed), seed=0)


def test_bed_without_the_splits(tmp_path):
    fasta, bed, _ = genome_files(tmp_path, ["chr1\t0\t1000\ttrain"])
    with pytest.raises(DataError, match="no interval with split 'valid'.*the file has train"):
        DNADataModule(DNADataConfig(fasta=fasta, bed=bed), seed=0)
    fasta, bed, _ = genome_files(tmp_path, ["chr1\t0\t1000\tfit", "chr1\t1000\t2000\tvalid"])
    dm = DNADataModule(DNADataConfig(fasta=fasta, bed=bed, train_split="fit", max_len=32), seed=0)
    assert dm.train_regions == [("chr1", 0, 1000)]
    with pytest.raises(DataError, match="no such file"):
        read_bed(tmp_path / "missing.bed", CHROMS)


def test_fasta_quirks(tmp_path):
    """CRLF line ends read as LF; a last line shorter than the others is fine; lines of other widths
    and empty records are clear errors (found when the genome is opened, never mid-epoch)."""
    (tmp_path / "crlf.fa").write_bytes(b">a desc\r\nACGTAC\r\nGTacgt\r\nNN\r\n>b\r\nGGGG\r\n")
    g = Genome(tmp_path / "crlf.fa")
    assert g.lengths == {"a": 14, "b": 4}
    assert g.fetch("a", 0, 14).tolist() == tokenize("ACGTACGTACGTNN").tolist()
    assert g.fetch("a", 5, 8).tolist() == tokenize("CGT").tolist()
    for name, text in [
        ("short_middle.fa", b">a\nACGTACGT\nACG\nACGTACGT\n"),
        ("long_last.fa", b">a\nACGT\nACGTACGTAC\n>b\nAC\n"),
    ]:
        (tmp_path / name).write_bytes(text)
        with pytest.raises(DataError, match="(malformed FASTA|lines of different widths)"):
            Genome(tmp_path / name)
    (tmp_path / "empty_record.fa").write_bytes(b">a\nACGT\n>b\n>c\nACGT\n")
    with pytest.raises(DataError, match="record 'b' has no sequence"):
        Genome(tmp_path / "empty_record.fa")
