"""``python -m data_prep.hg38 --out DIR``: the human genome and HyenaDNA's train/valid/test intervals.

Writes ``DIR/hg38.fa`` (+ ``hg38.fa.fai``, built by pyfaidx), ``DIR/human-sequences.bed`` and
``DIR/SOURCE.json`` (URLs, checksums, sizes). Then:
``python -m seqssm.train task=dna task.data.fasta=DIR/hg38.fa task.data.bed=DIR/human-sequences.bed``.

Sources:
- FASTA: UCSC's hg38 (GRCh38) soft-masked genome, FASTA_URL below (about 938 MB gzipped, 3.2 GB
  unpacked), verified against the MD5 that UCSC publishes beside it (MD5_URL, fetched at run time;
  ``--fasta-md5`` pins it instead).
- BED: the sequence intervals HyenaDNA trains on (Basenji's ``sequences_human.bed``: chrom, start, end,
  split in train/valid/test), BED_URL below, as HyenaDNA's README downloads it. No checksum is published:
  its SHA-256 is recorded in SOURCE.json at the first download and required from then on
  (``--bed-sha256`` pins it). The BED is checked against the FASTA (chromosomes, bounds).

Resumable: an interrupted download continues from its ``.part`` file. Where a file is already present
and verified, nothing is downloaded. ``--fasta-url``/``--bed-url``/``--md5-url`` take other URLs,
``file://`` URLs or local paths (e.g. HyenaDNA's own ``hg38.ml.fa.gz`` from the same bucket).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import urlparse

import pyfaidx

from data_prep.download import Checksum, fetch, gunzip
from seqssm.errors import DataError, SeqssmError
from seqssm.io import write_json
from seqssm.tasks.dna_regions import read_bed

FASTA_URL = "https://hgdownload.soe.ucsc.edu/goldenPath/hg38/bigZips/hg38.fa.gz"
MD5_URL = "https://hgdownload.soe.ucsc.edu/goldenPath/hg38/bigZips/md5sum.txt"
BED_URL = "https://storage.googleapis.com/basenji_barnyard2/sequences_human.bed"
FASTA, BED = "hg38.fa", "human-sequences.bed"


def published_md5(md5_url: str, name: str, out: Path) -> str:
    """The MD5 of ``name`` in a ``md5sum.txt`` listing ('<hex>  <file>' per line)."""
    listing = out / "md5sum.txt"
    if listing.exists():
        listing.unlink()  # small; always the current listing
    fetch(md5_url, listing, Checksum("md5", None), progress=False)
    for line in listing.read_text(errors="replace").splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("*") == name:
            return fields[0].lower()
    raise DataError(f"--md5-url={md5_url}: lists no checksum for {name}; pass --fasta-md5")


def prepare(args: argparse.Namespace) -> dict:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    source_file = out / "SOURCE.json"
    source = json.loads(source_file.read_text()) if source_file.is_file() else {}
    fasta, fai = out / FASTA, out / (FASTA + ".fai")
    gz_name = Path(urlparse(args.fasta_url).path).name

    done = source.get("fasta", {})
    if (
        fasta.is_file()
        and fai.is_file()
        and done.get("bytes") == fasta.stat().st_size
        and done.get("url") == args.fasta_url
    ):
        print(f"data_prep: {fasta} already present and verified: nothing to do", file=sys.stderr)
    else:
        md5 = args.fasta_md5 or published_md5(args.md5_url, gz_name, out)
        gz = out / gz_name
        fetch(args.fasta_url, gz, Checksum("md5", md5), progress=not args.quiet)
        gunzip(gz, fasta, progress=not args.quiet)
        if fai.exists():
            fai.unlink()
        try:
            pyfaidx.Faidx(str(fasta))  # writes hg38.fa.fai
        except (pyfaidx.FastaIndexingError, ValueError) as e:
            raise DataError(f"{fasta}: not an indexable FASTA ({e})") from None
        if not args.keep_gz:
            gz.unlink()
        source["fasta"] = {"url": args.fasta_url, "md5_gz": md5, "bytes": fasta.stat().st_size}
        write_json(source_file, source)

    bed = out / BED
    pinned = args.bed_sha256 or source.get("bed", {}).get("sha256")
    digest = fetch(args.bed_url, bed, Checksum("sha256", pinned), progress=not args.quiet)
    lengths = {}
    for line in fai.read_text().splitlines():
        name, length = line.split("\t")[:2]
        lengths[name] = int(length)
    splits = read_bed(bed, lengths, key=str(bed))
    source["bed"] = {"url": args.bed_url, "sha256": digest, "intervals": {k: len(v) for k, v in splits.items()}}
    write_json(source_file, source)
    return source


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_prep.hg38", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for hg38.fa, its .fai and the BED")
    parser.add_argument("--fasta-url", default=FASTA_URL)
    parser.add_argument("--md5-url", default=MD5_URL, help="an md5sum.txt listing the gzipped FASTA")
    parser.add_argument("--fasta-md5", help="the gzipped FASTA's MD5 (instead of reading --md5-url)")
    parser.add_argument("--bed-url", default=BED_URL)
    parser.add_argument("--bed-sha256", help="require this SHA-256 of the BED")
    parser.add_argument("--keep-gz", action="store_true", help="keep the .gz after unpacking")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    try:
        source = prepare(args)
    except SeqssmError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    counts = ", ".join(f"{k} {v:,}" for k, v in source["bed"]["intervals"].items())
    print(f"data_prep: {args.out / FASTA} ({source['fasta']['bytes']:,} bytes) and {args.out / BED} ({counts})")
    print(
        f"data_prep: python -m seqssm.train task=dna task.data.fasta={args.out / FASTA} task.data.bed={args.out / BED}"
    )


if __name__ == "__main__":
    main()
