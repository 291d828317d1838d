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
