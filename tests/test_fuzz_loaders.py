"""Fuzzing the loaders with random bytes and near-valid files: they either work or raise the
documented DataError with a message; never another exception, a hang or a crash."""

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqssm.errors import DataError
from seqssm.genome import Genome

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

fasta_lines = st.lists(
    st.one_of(
        st.text(alphabet="ACGTNacgtnRY", min_size=0, max_size=70),
        st.text(alphabet=string.printable, min_size=0, max_size=30),
        st.builds(lambda n: ">" + n, st.text(alphabet=string.ascii_letters + string.digits + " _|", max_size=12)),
    ),
    max_size=12,
)


def read_all(genome: Genome) -> None:
    for name, length in genome.lengths.items():
        genome.fetch(name, 0, length)


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_as_fasta(tmp_path, data):
    path = tmp_path / "fuzz.fa"
    path.write_bytes(data)
    for p in tmp_path.glob("fuzz.fa.fai"):
        p.unlink()
    try:
        read_all(Genome(path))
    except DataError as e:
        assert str(path) in str(e)


@FUZZ
@given(lines=fasta_lines, crlf=st.booleans())
def test_near_valid_fasta(tmp_path, lines, crlf):
    path = tmp_path / "near.fa"
    path.write_bytes(("\r\n" if crlf else "\n").join([">chr1", *lines]).encode())
    for p in tmp_path.glob("near.fa.fai"):
        p.unlink()
    try:
        read_all(Genome(path))
    except DataError as e:
        assert str(path) in str(e)


@pytest.mark.parametrize("text", ["", ">", ">a\n", ">a\nACGT\n>a\nACGT\n", "ACGT\n", ">a\nAC GT\n"])
def test_corner_cases_are_clear_errors_or_work(tmp_path, text):
    path = tmp_path / "c.fa"
    path.write_text(text)
    try:
        read_all(Genome(path))
    except DataError as e:
        assert str(path) in str(e)


def valid_wav_bytes(tmp_path, n: int, channels: int, rate: int) -> bytes:
    import numpy as np
    import soundfile as sf

    path = tmp_path / "valid.wav"
    sf.write(str(path), np.zeros((n, channels), dtype=np.int16) + 100, rate, subtype="PCM_16", format="WAV")
    return path.read_bytes()


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_as_wav(tmp_path, data):
    from seqssm.audio import read_clip

    path = tmp_path / "fuzz.wav"
    path.write_bytes(data)
    try:
        read_clip(path)
    except DataError as e:
        assert str(path) in str(e)


@FUZZ
@given(
    n=st.integers(0, 400),
    channels=st.integers(1, 2),
    rate=st.sampled_from([8000, 16000, 44100]),
    cut=st.integers(0, 900),
    flips=st.lists(st.tuples(st.integers(0, 900), st.integers(0, 255)), max_size=4),
)
def test_truncated_or_corrupted_wav(tmp_path, n, channels, rate, cut, flips):
    from seqssm.audio import read_clip

    data = bytearray(valid_wav_bytes(tmp_path, n, channels, rate))
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    path = tmp_path / "bad.wav"
    path.write_bytes(bytes(data[: max(0, len(data) - cut)]))
    try:
        clip, _ = read_clip(path)
        assert clip.shape == (16000,)
    except DataError as e:
        assert str(path) in str(e)


LENGTHS = {"chr1": 1000, "chrM": 16}
bed_fields = st.one_of(
    st.sampled_from(["chr1", "chrM", "chrX", "train", "valid", "test", "#", "track", "-1", "0", "16", "999", "1000"]),
    st.integers(min_value=-5, max_value=1100).map(str),
    st.text(alphabet=string.printable.replace("\n", "").replace("\r", ""), max_size=8),
)
bed_lines = st.lists(st.lists(bed_fields, max_size=6).map("\t".join), max_size=10)


def check_bed(path) -> None:
    """read_bed either returns intervals inside their chromosomes or raises a DataError naming the file."""
    from seqssm.tasks.dna_regions import read_bed

    try:
        splits = read_bed(path, LENGTHS)
    except DataError as e:
        assert str(path) in str(e)
        return
    for regions in splits.values():
        for chrom, s, e in regions:
            assert 0 <= s < e <= LENGTHS[chrom]


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_as_bed(tmp_path, data):
    path = tmp_path / "fuzz.bed"
    path.write_bytes(data)
    check_bed(path)


@FUZZ
@given(lines=bed_lines, crlf=st.booleans())
def test_near_valid_bed(tmp_path, lines, crlf):
    path = tmp_path / "near.bed"
    path.write_bytes(("\r\n" if crlf else "\n").join(["chr1\t0\t100\ttrain", *lines]).encode())
    check_bed(path)
