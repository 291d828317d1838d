"""Driver of the time-sequential selective scan (time-varying B/C, grouped or not; forward for real and
complex A, backward for real and complex A).

Forward: ``selective_scan_fwd_seq`` (see its docstring for the math and the layout); when
batch·dim/BLOCK_D programs would leave the GPU idle, time is split into S segments: a ``LOCAL`` pass
gives each segment's final state from zero and its decay exp(A Σ Δ), ``selective_scan_seg`` chains
them (H_s = P_{s-1} H_{s-1} + q_{s-1}) and the full pass recomputes each segment from H_s, writing
``out``. Backward: ``selective_scan_bwd_seq`` on the same segments, in reverse time: a ``LOCAL`` pass
gives each segment the adjoint μ leaving its start from μ = 0 and its decay, ``selective_scan_seg``
chains them backwards (M_{s-1} = P_s M_s + q_s, from the last state's gradient) and the full pass
recomputes states from the forward's checkpoints and writes every gradient.

Kernel layouts: B, C as (batch, groups, L, N) (one N-vector per step), states (batch, S, dim, N) and
checkpoints (batch, n_ck, dim, N), fp32.
"""

from __future__ import annotations

import functools

import torch
import triton

from seqssm.kernels.selective_scan_bwd_seq import launch_bwd_seq
from seqssm.kernels.selective_scan_common import pow2_divisor
from seqssm.kernels.selective_scan_fwd_seq import launch_fwd_seq
from seqssm.kernels.selective_scan_seg import propagate

# num_warps: BLOCK_D = 32·num_warps channels per program (one per thread). T: steps per unrolled tile.
# CK: checkpoint interval for the backward (multiple of T). Segments: time is split until the programs
# fill a whole number of waves of the GPU's resident slots (SMs x blocks_per_sm programs, x waves), never
# more: a grid that exceeds a whole wave by a fraction leaves a tail in which a few programs run alone
# (ncu, H100, 2026-11-23, 8K x 4 x 2048: the old split to 2,112 warps gave 576 programs = 1.09 waves of
# the forward and 2.18 of the backward, "up to 33 %" of the backward's time in the tail). blocks_per_sm
# is the occupancy that the registers allow (65,536 / (registers x 32 x num_warps)): forward 128
# registers -> 4, backward and complex 255 -> 2 (ptxas, 4 warps). waves 2: on the H200 (bench/scan.py
# --plan-sweep, 2026-12-04) forward+backward 6.45 / 6.07 / 5.89 ms at 8K x 4 for the old split / one wave /
# two waves, 28.5 / 24.2 / 23.3 ms at 32K x 4, equal at 2K x 4. max_seg caps S. bwd_T: steps per tile
# of the backward, whose T states are held in registers (T·N fp32 per thread); CK must be a multiple of it.
# T_cplx / bwd_T_cplx: T of the complex-A forward and backward (two state tiles and two B/C vectors per
# step). Forward T 4 compiles to 254 registers without spills on sm_90a, 8 spills; backward T 2 spills
# ~0.5 KB, T 1 ~0.2 KB (bench/profile_scan.py --aot). Measured (H200, 1 x 8K x 2048, bf16,
# bench/scan_profile.py --complex-sweep): (T, bwd T) = (4, 2) 1.05 / 5.26 ms forward / fwd+bwd,
# (4, 1) 1.05 / 4.83, (2, 2) 0.88 / 5.10, (2, 1) 0.88 / 4.65.
CONFIG = {"num_warps": 4, "T": 8, "CK": 64, "blocks_per_sm": 4, "bwd_blocks_per_sm": 2, "cplx_blocks_per_sm": 2,
          "waves": 2, "max_seg": 64, "bwd_T": 4, "T_cplx": 2, "bwd_T_cplx": 1}
# the interpreter: no SMs; as many segments as max_seg allows
INTERPRET_CONFIG = {"num_warps": 2, "T": 4, "CK": 8, "blocks_per_sm": 1 << 30, "bwd_blocks_per_sm": 1 << 30,
                    "cplx_blocks_per_sm": 1 << 30, "waves": 1, "max_seg": 4, "bwd_T": 4, "T_cplx": 2, "bwd_T_cplx": 1}


def resident_programs(device: torch.device, blocks_per_sm: int) -> int:
    """Programs the device runs at once at ``blocks_per_sm`` per SM (the interpreter: blocks_per_sm)."""
    if device.type != "cuda":
        return blocks_per_sm
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device()) * blocks_per_sm


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def config(device: torch.device) -> dict:
    return CONFIG if device.type == "cuda" else INTERPRET_CONFIG


def supported(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> bool:
    """Forward: real or complex A with time-varying (optionally grouped) B and C."""
    return B.dim() >= 3 and C.dim() >= 3


def supported_bwd(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> bool:
    """Backward: the forward's cases, real or complex A (time-varying, optionally grouped, B and C)."""
    return supported(A, B, C)


def bc_seq(M: torch.Tensor, cplx: bool = False) -> torch.Tensor:
    """(batch, N, L) or (batch, groups, N, L) -> (batch, groups, L, N), dtype kept (fp64 -> fp32).
    Complex (``cplx``: mamba_ssm's packing, (real, imag) pairs along time, (batch, [groups,] N, 2L)) ->
    (batch, groups, L, 2N) = (..., L, (re, im), N): per step the real N-vector, then the imaginary one
    (two contiguous vector loads in the kernel).

    Kept in bf16/fp16 rather than staged as fp32: fp32 staging removes the per-step conversions but
    doubles the bytes of the broadcast B_t, C_t loads, and measured slower on the H100
    (bench/scan_bc_staging.py, 2026-11-23: forward 2.08 vs 1.22 ms, forward+backward 8.46 vs 6.93 ms at
    batch 4, L 8K, d 2048)."""
    if M.dim() == 3:
        M = M.unsqueeze(1)
    if M.dtype == torch.float64:
        M = M.float()
    if cplx:
        b, g, n, l2 = M.shape
        return M.unflatten(-1, (l2 // 2, 2)).permute(0, 1, 3, 4, 2).reshape(b, g, l2 // 2, 2 * n)
    return M.transpose(-1, -2).contiguous()


def plan(batch: int, dim: int, L: int, groups: int, num_warps: int, cfg: dict, slots: int) -> tuple[int, int, int]:
    """(block_d, seg_len, n_seg): segments of a multiple of CK steps, as many as fit in ``slots``
    programs (whole waves of resident programs), at least one."""
    block_d = pow2_divisor(dim // groups, 32 * num_warps)
    programs = triton.cdiv(dim, block_d) * batch
    n_ck = triton.cdiv(L, cfg["CK"])
    n_seg = max(1, min(slots // programs, cfg["max_seg"], n_ck))
    seg_len = triton.cdiv(n_ck, n_seg) * cfg["CK"]
    return block_d, seg_len, triton.cdiv(L, seg_len)


def fwd_seq(u, dt, A, Bt, Ct, D, z, bias, h0, *, softplus_: bool, groups: int, save_ckpt: bool,
            ck: int | None = None, cplx: bool = False):
    """Forward on prepared tensors (u, dt, z contiguous (batch, dim, L); A (dim, N) fp32; Bt, Ct from
    ``bc_seq``; h0 (batch, dim, N) fp32 or None). ck: checkpoint interval (a multiple of T; default
    CONFIG's). Returns (out, last (batch, dim, N), ckpt (batch, cdiv(L, ck), dim, N) or None, seg_len).
    Complex (``cplx``): A (dim, 2N), h0, last and ckpt (..., dim, 2N), (re, im) pairs; Bt, Ct from
    ``bc_seq(M, cplx=True)``."""
    batch, dim, L = u.shape
    N = A.shape[1]  # per state: N real numbers, or N / 2 complex ones
    cfg = dict(config(u.device))
    cfg["CK"] = ck or cfg["CK"]
    nw = cfg["num_warps"]
    slots = resident_programs(u.device, cfg["cplx_blocks_per_sm" if cplx else "blocks_per_sm"]) * cfg["waves"]
    block_d, seg_len, n_seg = plan(batch, dim, L, groups, nw, cfg, slots)
    f32 = dict(device=u.device, dtype=torch.float32)
    out = torch.empty_like(u)
    hout = torch.empty(batch, n_seg, dim, N, **f32)
    h0k = None if h0 is None else h0.contiguous()  # (batch, dim, N) = (batch, 1, dim, N)
    ckpt = torch.empty(batch, triton.cdiv(L, cfg["CK"]), dim, N, **f32) if save_ckpt else None
    kw = dict(softplus_=softplus_, seg_len=seg_len, n_seg=n_seg, ch_per_group=dim // groups,
              block_d=block_d, t=cfg.get("T_cplx", cfg["T"]) if cplx else cfg["T"], ck=cfg["CK"], num_warps=nw,
              cplx=cplx)
    hin = h0k
    if n_seg > 1:
        decay = torch.empty_like(hout)
        launch_fwd_seq(u, dt, A, Bt, Ct, D, z, bias, None, out, hout, decay, None, local=True, **kw)
        hin = torch.empty_like(hout)
        propagate(decay, hout, h0k, hin, reverse=False, cplx=cplx)
        hout = torch.empty_like(hout)
    launch_fwd_seq(u, dt, A, Bt, Ct, D, z, bias, hin, out, hout, None, ckpt, local=False, **kw)
    last = hout[:, -1]
    return out, last, ckpt, seg_len


def bwd_seq(u, dt, A, Bt, Ct, D, z, bias, ckpt, gout, glast, *, softplus_: bool, groups: int, ck: int,
            want_h0: bool, cplx: bool = False):
    """Backward on the forward's prepared tensors and its checkpoints (taken every ``ck`` steps); gout
    (batch, dim, L) contiguous, glast (batch, dim, N) fp32 or None. Returns (gu, gdelta, gz, gA (dim, N),
    gB, gC (batch, groups, L, N) fp32, gD, gbias (dim,) fp32, gh0 (batch, dim, N) fp32), None where the
    input is absent. Complex (``cplx``): A, ckpt, glast, gA, gh0 (..., 2N) as (re, im) pairs, Bt, Ct and
    gB, gC (batch, groups, L, 2N) = (..., L, (re, im), N); the adjoint's segment carry multiplies by
    conj(exp(A Σ Δ)) (the LOCAL pass writes the conjugate as the decay)."""
    batch, dim, L = u.shape
    N = A.shape[1]  # real numbers per state: N, or 2 x N/2 for complex A
    cfg = dict(config(u.device))
    if cplx:
        cfg["bwd_T"] = cfg["bwd_T_cplx"]
    cfg["CK"] = ck
    nw = cfg["num_warps"]
    slots = resident_programs(u.device, cfg["bwd_blocks_per_sm"]) * cfg["waves"]
    block_d, seg_len, n_seg = plan(batch, dim, L, groups, nw, cfg, slots)
    n_dblk = triton.cdiv(dim, block_d)
    f32 = dict(device=u.device, dtype=torch.float32)
    # ḡB, ḡC: fp32, accumulated by atomic adds of per-warp sums
    grads = (torch.empty_like(u), torch.empty_like(dt), None if z is None else torch.empty_like(z),
             torch.empty(batch, n_seg, dim, N, **f32), torch.zeros(batch, groups, L, N, **f32),
             torch.zeros(batch, groups, L, N, **f32), torch.empty(batch, n_seg, dim, **f32),
             torch.empty(batch, n_seg, dim, **f32))
    K = 2 if cplx else 1
    NP = max(triton.next_power_of_2(N // K), 2)
    scratch = torch.empty(1 + batch * n_seg * n_dblk * (ck // cfg["bwd_T"]) * K * block_d * NP, **f32)
    kw = dict(softplus_=softplus_, seg_len=seg_len, n_seg=n_seg, ch_per_group=dim // groups,
              block_d=block_d, t=cfg["bwd_T"], ck=ck, num_warps=nw, cplx=cplx)
    mout = torch.empty(batch, n_seg, dim, N, **f32)
    glast = None if glast is None else glast.contiguous()
    mu_in = glast  # (batch, dim, N) = (batch, 1, dim, N)
    if n_seg > 1:
        decay = torch.empty_like(mout)
        launch_bwd_seq(u, dt, A, Bt, Ct, D, z, bias, None, gout, None, grads, mout, decay, scratch,
                       local=True, **kw)
        mu_in = torch.empty_like(mout)
        propagate(decay, mout, glast, mu_in, reverse=True, cplx=cplx)
        mout = torch.empty_like(mout)
    launch_bwd_seq(u, dt, A, Bt, Ct, D, z, bias, ckpt, gout, mu_in, grads, mout, None, scratch, local=False,
                   **kw)
    gu, gdt, gz, gA, gB, gC, gD, gbias = grads
    return (gu, gdt, gz, gA.sum((0, 1)), gB, gC,
            gD.sum((0, 1)) if D is not None else None, gbias.sum((0, 1)) if bias is not None else None,
            mout[:, 0] if want_h0 else None)
