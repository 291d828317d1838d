"""One helper for the bench scripts that drive ``python -m seqssm.*`` runs as subprocesses."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def run(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` with its output appended to ``log``; returns wall seconds, raises naming the log on failure."""
    print("$ " + " ".join(cmd), flush=True)
    start = time.time()
    with open(log, "a") as f:
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, text=True)
    if p.returncode:
        raise RuntimeError(f"failed ({p.returncode}): {' '.join(cmd)}; see {log}")
    return time.time() - start
