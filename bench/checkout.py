"""Running the benchmarks from a plain checkout (the GPU machine has no editable install): the repository
root on sys.path and the top-level kernels/ folder importable as ``seqssm.kernels``."""

from __future__ import annotations

import importlib.util
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def map_kernels_package() -> None:
    """Make ``seqssm.kernels`` (the top-level kernels/ folder) importable from a plain checkout."""
    import seqssm

    try:
        import seqssm.kernels  # noqa: F401
    except ModuleNotFoundError:
        path = os.path.join(ROOT, "kernels")
        spec = importlib.util.spec_from_file_location(
            "seqssm.kernels", os.path.join(path, "__init__.py"), submodule_search_locations=[path])
        mod = importlib.util.module_from_spec(spec)
        sys.modules["seqssm.kernels"] = mod
        spec.loader.exec_module(mod)
        seqssm.kernels = mod
