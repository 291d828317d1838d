"""Run seqssm's Triton selective scan forward and backward a few times at one shape, for a
profiler (``ncu --kernel-name regex:selective_scan ...``). bf16, N = 16, with D, z, bias, softplus.

    python bench/profile_scan.py [batch dim L]
    python bench/profile_scan.py --kernels [batch dim L]   # torch.profiler: every CUDA kernel of one
        # forward+backward (ours and the staging copies around them), with its GPU time
    python bench/profile_scan.py --aot [T num_warps T_bwd T_cplx T_bwd_cplx]   # no GPU: compile the
        # time-sequential forward and backward (real and complex A) for sm_90a, print shfl / bar.sync /
        # ex2 / sin / cos counts, registers and spills

``--aot`` writes /tmp/{fwd,bwd}_seq_local{0,1}.{ptx,ttgir} and /tmp/{fwd,bwd}_seq_cplx_local{0,1}.* and
runs ``ptxas -arch=sm_90a -v`` on each.
Integer arguments get divisibility 16 (as the launcher specializes them), which is what lets the
coalescing pass keep the T steps of a tile inside each thread.
"""

from __future__ import annotations

import sys

import torch

from seqssm.kernels.selective_scan import selective_scan_triton


def _compile(fn, nw: int, consts: dict, bf: set, name: str) -> None:
    """Compile ``fn`` for sm_90a with the given constexprs (pointers in ``bf`` bf16, the rest fp32),
    write NAME.{ptx,ttgir}, print shfl / bar.sync / ex2 counts and ptxas' registers and spills."""
    import subprocess

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = {a: "constexpr" if a in consts else ("*bf16" if a in bf else "*fp32") if a.endswith("_ptr") else "i32"
           for a in fn.arg_names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(fn.arg_names)
             if sig[a] != "constexpr" and a not in ("n_seg", "G", "ch_per_group")}
    k = triton.compile(ASTSource(fn, sig, constexprs={(fn.arg_names.index(a),): v for a, v in consts.items()},
                                 attrs=attrs), target=GPUTarget("cuda", 90, 32), options={"num_warps": nw})
    ptx = k.asm["ptx"]
    open(name + ".ptx", "w").write(ptx)
    open(name + ".ttgir", "w").write(k.asm["ttgir"])
    r = subprocess.run([_ptxas(), "-arch=sm_90a", "-v", name + ".ptx", "-o", "/dev/null"], capture_output=True,
                       text=True)
    regs = [ln.split("Used")[1].strip() for ln in r.stderr.splitlines() if "Used" in ln]
    spill = [ln.strip() for ln in r.stderr.splitlines() if "spill" in ln]
    print(name, "shfl", ptx.count("shfl.sync"), "bar.sync", ptx.count("bar.sync"), "ex2", ptx.count("ex2.approx"),
          "sin", ptx.count("sin.approx"), "cos", ptx.count("cos.approx"), "|", *regs, "|", *spill)


def _ptxas() -> str:
    import os
    import shutil

    import triton

    bundled = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    return bundled if os.path.exists(bundled) else shutil.which("ptxas")


def aot(T: int = 8, nw: int = 4, T_bwd: int = 4, T_cplx: int | None = None, T_bwd_cplx: int | None = None) -> None:
    """Compile the time-sequential forward (LOCAL and full) and backward (LOCAL and full) for sm_90a, real
    and complex A (T_cplx, T_bwd_cplx steps per tile; default the complex CONFIG's)."""
    import os

    os.environ.pop("TRITON_INTERPRET", None)
    from seqssm.kernels.selective_scan_bwd_seq import SCATTER_SUMS
    from seqssm.kernels.selective_scan_bwd_seq import scan_bwd_seq_kernel as bwd
    from seqssm.kernels.selective_scan_fwd_seq import scan_fwd_seq_kernel as fwd

    common = dict(N=16, NP=16, BLOCK_D=32 * nw, CK=64, HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True)
    for local in (False, True):
        _compile(fwd, nw, dict(common, T=T, LOCAL=local, HAS_HIN=True, SAVE_CKPT=not local, CPLX=False,
                               FAST_TRIG=False),
                 {"u_ptr", "dt_ptr", "z_ptr", "out_ptr", "B_ptr", "C_ptr"}, f"/tmp/fwd_seq_local{int(local)}")
    from seqssm.kernels.selective_scan_seq import CONFIG

    if T_cplx is None:
        T_cplx = CONFIG["T_cplx"]
    if T_bwd_cplx is None:
        T_bwd_cplx = CONFIG["bwd_T_cplx"]
    for local in (False, True):
        _compile(fwd, nw, dict(common, T=T_cplx, LOCAL=local, HAS_HIN=True, SAVE_CKPT=not local, CPLX=True,
                               FAST_TRIG=True),
                 {"u_ptr", "dt_ptr", "z_ptr", "out_ptr", "B_ptr", "C_ptr"}, f"/tmp/fwd_seq_cplx_local{int(local)}")
    for local in (False, True):
        _compile(bwd, nw, dict(common, T=T_bwd, LOCAL=local, HAS_MIN=True, CPLX=False, FAST_TRIG=False,
                               SCATTER=SCATTER_SUMS),
                 {"u_ptr", "dt_ptr", "z_ptr", "gout_ptr", "B_ptr", "C_ptr", "gu_ptr", "gdt_ptr", "gz_ptr"},
                 f"/tmp/bwd_seq_local{int(local)}")
    for local in (False, True):
        _compile(bwd, nw, dict(common, T=T_bwd_cplx, LOCAL=local, HAS_MIN=True, CPLX=True, FAST_TRIG=True,
                               SCATTER=SCATTER_SUMS),
                 {"u_ptr", "dt_ptr", "z_ptr", "gout_ptr", "B_ptr", "C_ptr", "gu_ptr", "gdt_ptr", "gz_ptr"},
                 f"/tmp/bwd_seq_cplx_local{int(local)}")


def main() -> None:
    if sys.argv[1:2] == ["--aot"]:
        aot(*(int(v) for v in sys.argv[2:7]))
        return
    kernels = sys.argv[1:2] == ["--kernels"]
    argv = sys.argv[2:] if kernels else sys.argv[1:]
    batch, dim, L = (int(v) for v in (argv[:3] if len(argv) > 2 else (4, 2048, 8192)))
    dev, bf = "cuda", torch.bfloat16
    u, z = torch.randn(batch, dim, L, device=dev, dtype=bf), torch.randn(batch, dim, L, device=dev, dtype=bf)
    delta = (0.5 * torch.randn(batch, dim, L, device=dev) - 2).to(bf)
    A = -(torch.rand(dim, 16, device=dev) * 15 + 1)
    B, C = torch.randn(batch, 16, L, device=dev, dtype=bf), torch.randn(batch, 16, L, device=dev, dtype=bf)
    D, bias = torch.randn(dim, device=dev), 0.1 * torch.randn(dim, device=dev)
    leaves = [t.requires_grad_() for t in (u, delta, A, B, C, D, z, bias)]
    def fwd_bwd():
        out, _ = selective_scan_triton(*leaves, True, None)
        torch.autograd.grad(out, leaves, torch.ones_like(out))

    for _ in range(3):
        fwd_bwd()
    torch.cuda.synchronize()
    if kernels:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                fwd_bwd()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="device_time_total", row_limit=30))


if __name__ == "__main__":
    main()
