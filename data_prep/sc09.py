"""``python -m data_prep.sc09 --out DIR [--archive FILE]``: SC09 from Speech Commands v0.02.

Downloads the Speech Commands v0.02 archive (Warden 2018; CC BY 4.0) from
http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz (about 2.4 GB; or takes
``--archive``, a copy already on disk), verifies its SHA-256
(af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58, the value torchaudio's
SPEECHCOMMANDS dataset checks), and keeps the ten digit words "zero" .. "nine" (SC09, Donahue et
al. 2019): every clip padded with silence or trimmed to 1 s at 16 kHz, 16-bit mono WAV, in the
same folder layout, with the official ``validation_list.txt`` and ``testing_list.txt`` reduced to
the digits. ``task=audio task.data.root=DIR`` (and ``task=audio_classify``) then train on it.

Resumable: the download continues a partial ``DIR/.download/*.part`` with an HTTP Range request
(and starts over if the server ignores it); extraction skips clips already written (each is
written atomically, so one that exists is complete). ``DIR/SOURCE.json`` is written last.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

import soundfile as sf
import torch
from tqdm.auto import tqdm

from seqssm.audio import CLIP_LEN, SAMPLE_RATE, pad_or_trim, write_wav
from seqssm.errors import DataError, SeqssmError
from seqssm.io import write_json, write_text
from seqssm.sc09 import DIGITS, LIST_FILES

URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path) -> Path:
    """``url`` -> ``dest``, continuing ``dest.part`` if there is one; progress bar in bytes."""
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except OSError as e:
        raise DataError(f"{url}: download failed ({e}); pass --archive FILE if you have the archive") from None
    with response:
        resumed = have and getattr(response, "status", 200) == 206
        if not resumed:
            have = 0  # the server sent the whole file
        total = response.headers.get("Content-Length")
        total = have + int(total) if total else None
        with open(part, "ab" if resumed else "wb") as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=dest.name
        ) as bar:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
    part.replace(dest)
    return dest


def digit_members(tar: tarfile.TarFile):
    """Yields (member, "word/file.wav") for the digit clips, and the two list files by name."""
    for m in tar:
        name = m.name.removeprefix("./")
        word = name.split("/", 1)[0]
        if m.isfile() and word in DIGITS and name.endswith(".wav") and name.count("/") == 1:
            yield m, name
        elif m.isfile() and name in LIST_FILES.values():
            yield m, name


def convert(archive: Path, out: Path) -> dict[str, int]:
    """Extract the digits from ``archive`` into ``out``; returns counts per split."""
    lists: dict[str, list[str]] = {}
    written = skipped = 0
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"{archive}: not a readable tar archive ({e})") from None
    with tar, tqdm(unit="clip", desc="SC09 clips") as bar:
        for member, name in digit_members(tar):
            data = tar.extractfile(member).read()
            if name in LIST_FILES.values():
                lists[name] = data.decode().splitlines()
                continue
            target = out / name
            if target.exists():
                skipped += 1
            else:
                try:
                    x, rate = sf.read(io.BytesIO(data), dtype="float32")
                except sf.LibsndfileError as e:
                    raise DataError(f"{archive}:{name}: not a readable WAV ({e})") from None
                if rate != SAMPLE_RATE or x.ndim != 1:
                    raise DataError(f"{archive}:{name}: {rate} Hz, {x.ndim} dims; expected 16 kHz mono")
                write_wav(target, pad_or_trim(torch.from_numpy(x), CLIP_LEN))
                written += 1
            bar.update(1)
    missing = [n for n in LIST_FILES.values() if n not in lists]
    if missing:
        raise DataError(f"{archive}: no {missing[0]} in the archive (is it Speech Commands v0.02?)")
    counts = {}
    for name, lines in lists.items():
        digits = sorted(line.strip() for line in lines if line.strip().split("/", 1)[0] in DIGITS)
        write_text(out / name, "\n".join(digits) + "\n")
        counts[name] = len(digits)
    counts["clips_written"], counts["clips_already_there"] = written, skipped
    return counts


def prepare(out: Path, archive: Path | None = None, url: str = URL, sha256: str = SHA256) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    if archive is None:
        archive = out / ".download" / url.rsplit("/", 1)[-1]
        if not archive.exists():
            download(url, archive)
    elif not archive.is_file():
        raise DataError(f"--archive {archive}: no such file")
    print(f"verifying {archive} (SHA-256)", file=sys.stderr)
    got = sha256_of(archive)
    if got != sha256:
        raise DataError(f"{archive}: SHA-256 {got}, expected {sha256} (a partial or different download: delete it)")
    counts = convert(archive, out)
    source = {"url": url, "archive": str(archive), "sha256": got, **counts, "words": list(DIGITS)}
    write_json(out / "SOURCE.json", source)
    return source


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Download and prepare SC09 (the digits of Speech Commands v0.02).")
    ap.add_argument("--out", required=True, type=Path, help="output folder (SC09 layout)")
    ap.add_argument("--archive", type=Path, help="a local speech_commands_v0.02.tar.gz instead of downloading")
    ap.add_argument("--url", default=URL, help="download from this mirror (checked against the same SHA-256)")
    args = ap.parse_args(argv)
    try:
        source = prepare(args.out, args.archive, args.url)
    except SeqssmError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"SC09 in {args.out}: {source}")


if __name__ == "__main__":
    main()
