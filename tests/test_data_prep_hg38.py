"""data_prep.download and data_prep.hg38 on local files only (paths and file:// URLs; no network)."""

import gzip
import hashlib
import json

import pytest

from data_prep import hg38
from data_prep.download import Checksum, fetch, gunzip
from seqssm.errors import DataError
from seqssm.genome import Genome


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_fetch_verifies_resumes_and_skips(tmp_path, capsys):
    src = tmp_path / "src.bin"
    data = bytes(range(256)) * 5000
    src.write_bytes(data)
    dest = tmp_path / "out" / "file.bin"
    good = Checksum("sha256", hashlib.sha256(data).hexdigest())
    assert fetch(src.as_uri(), dest, good, progress=False) == good.hexdigest
    assert dest.read_bytes() == data
    # already present and verified: nothing is read from the source (it is gone)
    src.rename(tmp_path / "moved.bin")
    fetch(src.as_uri(), dest, good)
    assert "already present and verified: nothing to do" in capsys.readouterr().err
    # resume: a partial download continues from its .part file
    dest.unlink()
    part = dest.with_name("file.bin.part")
    part.write_bytes(data[:1000])
    assert fetch(str(tmp_path / "moved.bin"), dest, good, progress=False) == good.hexdigest
    assert dest.read_bytes() == data and not part.exists()
    # a wrong checksum: the download is removed, a clear error
    dest.unlink()
    with pytest.raises(DataError, match="expected 0000"):
        fetch(str(tmp_path / "moved.bin"), dest, Checksum("md5", "0000"), progress=False)
    assert not dest.exists() and not part.exists()
    with pytest.raises(DataError, match="no such file"):
        fetch(str(tmp_path / "nothing.bin"), dest, good, progress=False)


def test_gunzip_atomic(tmp_path):
    (tmp_path / "a.gz").write_bytes(gzip.compress(b"ACGT" * 1000))
    gunzip(tmp_path / "a.gz", tmp_path / "a", progress=False)
    assert (tmp_path / "a").read_bytes() == b"ACGT" * 1000
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot decompress"):
        gunzip(tmp_path / "bad.gz", tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def mirror(tmp_path):
    """A miniature UCSC + Basenji mirror: hg38.fa.gz, md5sum.txt, sequences_human.bed."""
    site = tmp_path / "site"
    site.mkdir()
    fasta = b">chr1\n" + b"ACGTNacgtn" * 30 + b"\n>chr2\n" + b"GGCC" * 20 + b"\n"
    gz = gzip.compress(fasta)
    (site / "hg38.fa.gz").write_bytes(gz)
    (site / "md5sum.txt").write_text(f"{md5(b'other')}  hg38.2bit\n{md5(gz)}  hg38.fa.gz\n")
    (site / "sequences_human.bed").write_text("chr1\t0\t200\ttrain\nchr1\t200\t300\tvalid\nchr2\t0\t80\ttest\n")
    return site, fasta


def run_hg38(site, out, *extra):
    hg38.main(
        [
            "--out",
            str(out),
            "--fasta-url",
            (site / "hg38.fa.gz").as_uri(),
            "--md5-url",
            (site / "md5sum.txt").as_uri(),
            "--bed-url",
            str(site / "sequences_human.bed"),
            "--quiet",
            *extra,
        ]
    )


def test_hg38_pipeline_on_local_files(tmp_path, capsys):
    site, fasta = mirror(tmp_path)
    out = tmp_path / "hg38"
    run_hg38(site, out)
    assert (out / "hg38.fa").read_bytes() == fasta and (out / "hg38.fa.fai").is_file()
    assert not (out / "hg38.fa.gz").exists()
    source = json.loads((out / "SOURCE.json").read_text())
    assert source["bed"]["intervals"] == {"train": 1, "valid": 1, "test": 1}
    assert Genome(out / "hg38.fa").lengths == {"chr1": 300, "chr2": 80}
    capsys.readouterr()
    run_hg38(site, out)  # everything present and verified
    err = capsys.readouterr().err
    assert err.count("already present and verified: nothing to do") == 2
    # the BED changed upstream after its SHA-256 was recorded: refused
    (out / "human-sequences.bed").write_text("chr1\t0\t10\ttrain\n")
    with pytest.raises(SystemExit):
        run_hg38(site, out)
    assert "human-sequences.bed: present but its sha256" in capsys.readouterr().err


def test_hg38_refuses_a_corrupt_download_and_a_bed_that_does_not_fit(tmp_path, capsys):
    site, _ = mirror(tmp_path)
    with pytest.raises(SystemExit):
        run_hg38(site, tmp_path / "a", "--fasta-md5", "0" * 32)
    assert "downloaded file has md5" in capsys.readouterr().err
    (site / "sequences_human.bed").write_text("chr1\t0\t400\ttrain\n")  # chr1 has 300 bases
    with pytest.raises(SystemExit):
        run_hg38(site, tmp_path / "b")
    assert "ends past the end of chr1 (300 bases)" in capsys.readouterr().err
