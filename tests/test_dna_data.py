"""The DNA pipeline on real and synthetic FASTA files: tokenizer, reverse complement, windows that
stay inside their regions, seeded determinism, the Markov baseline, and clear errors."""

import math

import pytest
import torch

from seqssm.errors import DataError
from seqssm.genome import PAD, Genome, embedded_genome, reverse_complement, tokenize
from seqssm.markov import MarkovChain
from seqssm.tasks.dna import DNAConfig, DNADataConfig, DNADataModule, DNATask


def write_fasta(path, records: dict[str, str], width: int = 60) -> str:
    with open(path, "w") as f:
        for name, seq in records.items():
            f.write(f">{name}\n")
            for i in range(0, len(seq), width):
                f.write(seq[i : i + width] + "\n")
    return str(path)


def windows(dataset) -> list[dict]:
    """The training windows of one epoch, one dict per window (items of TrainBatches are batches)."""
    out = []
    for i in range(len(dataset)):
        batch = dataset[i]
        out += [{k: v[j] for k, v in batch.items()} for j in range(batch["inputs"].shape[0])]
    return out


def test_tokenize_folds_case_and_iupac():
    assert tokenize("ACGTNacgtnRYu").tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 4, 4, 3]
    with pytest.raises(DataError, match="'!'"):
        tokenize("AC!G")


def test_reverse_complement():
    ids = tokenize("AACGTN")
    assert reverse_complement(ids).tolist() == tokenize("NACGTT").tolist()
    assert reverse_complement(reverse_complement(ids)).tolist() == ids.tolist()
    assert reverse_complement(torch.tensor([0, PAD])).tolist() == [PAD, 3]


def test_embedded_genome_is_hg38_chrM():
    g = Genome(embedded_genome(), rebuild_index=False)
    assert g.lengths == {"chrM": 16569}
    assert g.fetch("chrM", 0, 10).tolist() == tokenize("GATCACAGGT").tolist()  # the first bases of chrM


def test_windows_stay_in_regions_and_are_seeded(tmp_path):
    torch.manual_seed(0)
    recs = {f"chr{i}": "".join("ACGT"[j] for j in torch.randint(0, 4, (n,)).tolist()) for i, n in
            enumerate([500, 130, 2000], start=1)}
    fasta = write_fasta(tmp_path / "g.fa", recs, width=50)
    cfg = DNADataConfig(fasta=fasta, max_len=64, batch_size=4, val_fraction=0.2, rc_aug=False, windows_per_epoch=50)
    dm = DNADataModule(cfg, seed=3)
    for name, seq in recs.items():  # train and validation regions partition each record
        spans = sorted((s, e) for n, s, e in dm.train_regions + dm.val_regions if n == name)
        assert spans[0][0] == 0 and spans[-1][1] == len(seq)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
        (val,) = [(s, e) for n, s, e in dm.val_regions if n == name]
        assert val[1] - val[0] == int(len(seq) * 0.2)
    seqs = {n: tokenize(s) for n, s in recs.items()}
    train = windows(dm.train_set)
    assert len(train) == 50 and [b["inputs"].shape[0] for b in dm.train_set] == [4] * 12 + [2]
    for w in train:
        window = torch.cat([w["inputs"][:1], w["targets"][w["mask"]]])
        # the window occurs in the training region of some record
        assert any(
            any(torch.equal(seqs[n][s : s + window.numel()], window) for s in range(0, e - window.numel() + 1))
            for n, _, e in dm.train_regions
        )
    again = DNADataModule(cfg, seed=3)
    assert all(torch.equal(dm.train_set[i]["inputs"], again.train_set[i]["inputs"]) for i in range(5))
    other = DNADataModule(cfg, seed=4)
    assert not any(torch.equal(dm.train_set[i]["inputs"], other.train_set[i]["inputs"]) for i in range(5))
    dm.set_epoch(1)
    assert not any(torch.equal(dm.train_set[i]["inputs"], again.train_set[i]["inputs"]) for i in range(5))


def test_validation_tiles_every_heldout_base_once(tmp_path):
    recs = {"a": "ACGT" * 100, "b": "GGCA" * 77}
    dm = DNADataModule(DNADataConfig(fasta=write_fasta(tmp_path / "g.fa", recs), max_len=16), seed=0)
    n_targets = sum(int(dm.val_set[i]["mask"].sum()) for i in range(len(dm.val_set)))
    assert n_targets == sum(end - start - 1 for _, start, end in dm.val_regions)


def test_rc_augmentation_gives_reverse_complements(tmp_path):
    seq = "".join("ACGT"[j] for j in torch.randint(0, 4, (3000,), generator=torch.Generator().manual_seed(1)))
    cfg = DNADataConfig(fasta=write_fasta(tmp_path / "g.fa", {"x": seq}), max_len=32, rc_aug=True)
    dm = DNADataModule(cfg, seed=0)
    fwd, rc = 0, 0
    for w in windows(dm.train_set)[:200]:
        window = "".join("ACGTN"[t] for t in torch.cat([w["inputs"][:1], w["targets"]]).tolist())
        comp = window[::-1].translate(str.maketrans("ACGT", "TGCA"))
        fwd += window in seq
        rc += comp in seq and window not in seq
    assert fwd + rc == 200 and 60 < rc < 140


def test_bad_fasta_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        Genome(tmp_path / "missing.fa")
    (tmp_path / "notfasta.txt").write_text("hello world\n")
    with pytest.raises(DataError, match="not a FASTA file"):
        Genome(tmp_path / "notfasta.txt")
    (tmp_path / "empty.fa").write_text("")
    with pytest.raises(DataError, match="empty"):
        Genome(tmp_path / "empty.fa")
    (tmp_path / "ragged.fa").write_text(">a\nACGTACGT\nACG\nACGTACGT\n")
    with pytest.raises(DataError, match="malformed FASTA"):
        Genome(tmp_path / "ragged.fa")
    g = Genome(write_fasta(tmp_path / "ok.fa", {"a": "ACGT" * 10}))
    with pytest.raises(DataError, match="outside the record"):
        g.fetch("a", 30, 45)
    with pytest.raises(DataError, match="no record named"):
        g.fetch("b", 0, 4)


def test_markov_chain_learns_a_deterministic_cycle():
    seq = tokenize("ACGT" * 200)
    chain = MarkovChain(2, 5, alpha=0.01).fit(seq)
    total, n = chain.nll(tokenize("ACGTACGTAC"))
    assert n == 9 and total / n < 0.5  # after one base of context the next is certain
    uniform = MarkovChain(0, 5, alpha=1.0)
    total, n = uniform.nll(tokenize("ACGT"))
    assert math.isclose(total / n, math.log(5))


def test_markov_baseline_on_chrM():
    task = DNATask(DNAConfig(), seed=1)
    ppl = task.baselines()["markov2_ppl"]
    assert 3.5 < ppl < 4.0
