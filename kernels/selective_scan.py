"""Selective scan (Mamba-1's S6) in Triton: the public entry ``selective_scan_triton``.

Math (Gu & Dao 2023, eq. 2a-2b and Algorithm 2)::

    Δ = softplus(delta + delta_bias)                       (each step optional)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t                h: (batch, dim, N), fp32
    y_t = C_t h_t + D u_t        (complex A: y_t = 2 Re(C_t h_t) + D u_t)
    out_t = y_t · silu(z_t)

Shapes as mamba_ssm's ``selective_scan_fn`` (see ``seqssm.ops.selective_scan``), plus
``initial_state`` and a differentiable last state. Two kernel families:

- time-sequential (``selective_scan_seq.py``: time-varying, optionally grouped, B and C): each thread
  runs one channel's recurrence step by step, forward and backward, real or complex A;
- chunked (``selective_scan_fwd.py``, ``selective_scan_bwd.py``: time-invariant B/C): a tile of
  BLOCK_L steps is scanned in parallel with ``tl.associative_scan``.

Both backwards walk time in reverse from the forward's checkpoints (the state every few steps),
recompute the states and run the adjoint recurrence ``λ_t = C_t^* g_y_t + exp(Δ_{t+1} A)^* λ_{t+1}``.

Inputs may be fp32, bf16 or fp16 (fp64 is computed in fp32); the state and all accumulations are
fp32; ``out`` has u's dtype and the gradients have their input's dtype.
"""

from __future__ import annotations

import torch
import triton

from seqssm.kernels.selective_scan_bwd import launch_bwd
from seqssm.kernels.selective_scan_common import like_rows, pow2_divisor, rows_layout
from seqssm.kernels.selective_scan_fwd import launch_fwd
from seqssm.kernels.selective_scan_seq import bc_seq, bwd_seq, config, fwd_seq, supported, supported_bwd

# (BLOCK_D, BLOCK_L, num_warps). The forward that saves checkpoints uses the backward's BLOCK_L.
# Each thread holds 16 elements of a (BLOCK_D, N=16, BLOCK_L) tile: no register spills on sm_90
# (ptxas -v). (2, 32, 2) was the fastest of the configurations swept on an H100 (bench/scan.py
# --sweep, 2026-11-23) for both kernels, at 8K x 4 and 128K x 1, d 2048.
CONFIG: dict[str, tuple[int, int, int]] = {"fwd": (2, 32, 2), "bwd": (2, 32, 2)}
INTERPRET_CONFIG: dict[str, tuple[int, int, int]] = {"fwd": (4, 16, 4), "bwd": (4, 16, 4)}
# Backward of the cases the time-sequential forward takes: True = time-sequential kernel. bench/scan.py
# sets it to False to time the chunked backward (v1) beside it; the tests compare the two.
SEQ_BACKWARD = True


def _config(kind: str, device: torch.device) -> tuple[int, int, int]:
    return (CONFIG if device.type == "cuda" else INTERPRET_CONFIG)[kind]


def _prep_bc(M: torch.Tensor, dim: int, cplx: bool) -> torch.Tensor:
    """Kernel layout of B or C: variable -> (batch, groups, N, L[x2]); time-invariant -> (dim, N[x2])."""
    if M.dim() == 2:
        if cplx:
            return torch.view_as_real(M.to(torch.complex64)).reshape(dim, -1).contiguous()
        return M.float().contiguous()
    if M.dim() == 3:
        M = M.unsqueeze(1)
    if M.dtype == torch.float64:
        M = M.float()
    return M.contiguous()


def _groups(B: torch.Tensor, C: torch.Tensor) -> int:
    gs = {M.shape[1] if M.dim() == 4 else 1 for M in (B, C) if M.dim() > 2}
    if len(gs) > 1:
        raise ValueError(f"B and C must have the same number of groups, got {sorted(gs)}")
    return gs.pop() if gs else 1


def _act(x: torch.Tensor | None) -> torch.Tensor | None:
    """Contiguous, and fp64 brought to fp32 (the kernels compute in fp32)."""
    if x is None:
        return None
    if x.dtype == torch.float64:
        x = x.float()
    return x.contiguous()


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state):
        batch, dim, L = u.shape
        cplx = A.is_complex()
        N = A.shape[1]
        groups = _groups(B, C)
        if dim % groups:
            raise ValueError(f"dim={dim} is not a multiple of groups={groups}")
        seq = supported(A, B, C)
        needs_grad = any(ctx.needs_input_grad)
        seq_bwd = seq and SEQ_BACKWARD and supported_bwd(A, B, C)
        if seq and (seq_bwd or not needs_grad):  # the time-sequential kernels take u's layout for all
            uk = rows_layout(u)
            dk, zk = like_rows(delta, uk), like_rows(z, uk)
        else:
            uk, dk, zk = _act(u), _act(delta), _act(z)
        Ak = torch.view_as_real(A.to(torch.complex64)).reshape(dim, 2 * N) if cplx else A.float()
        Ak = Ak.contiguous()
        Dk = None if D is None else D.float().contiguous()
        bk = None if delta_bias is None else delta_bias.float().contiguous()
        K = 2 if cplx else 1
        h0 = None
        if initial_state is not None:
            h0 = initial_state.to(torch.complex64 if cplx else torch.float32)
            h0 = (torch.view_as_real(h0) if cplx else h0).reshape(batch, dim, K * N).contiguous()
        bd, bl, nw = _config("fwd", u.device)
        if needs_grad:
            bl = _config("bwd", u.device)[1]
        bd = pow2_divisor(dim // groups, bd)
        n_chunks = triton.cdiv(L, bl)
        ckpt = None
        if seq:  # time-sequential kernel; checkpoints every ck steps for the backward
            ck = config(u.device)["CK"] if seq_bwd else bl
            Bt, Ct = bc_seq(B, cplx), bc_seq(C, cplx)
            out, hlast, ckpt, _ = fwd_seq(uk, dk, Ak, Bt, Ct, Dk, zk, bk, h0, softplus_=delta_softplus,
                                          groups=groups, save_ckpt=needs_grad, ck=ck, cplx=cplx)
            if seq_bwd:
                Bk, Ck, bl = Bt, Ct, ck
            else:  # the chunked backward's layouts; ckpt (batch, n_chunks, dim, K·N) -> (batch, dim, n_chunks, K·N)
                Bk, Ck = _prep_bc(B, dim, cplx), _prep_bc(C, dim, cplx)
                ckpt = None if ckpt is None else ckpt.transpose(1, 2).contiguous()
        else:
            Bk, Ck = _prep_bc(B, dim, cplx), _prep_bc(C, dim, cplx)
            out = torch.empty(batch, dim, L, device=u.device, dtype=u.dtype)
            hlast = torch.empty(batch, dim, K * N, device=u.device, dtype=torch.float32)
            if needs_grad:
                ckpt = torch.empty(batch, dim, n_chunks, K * N, device=u.device, dtype=torch.float32)
            launch_fwd(uk, dk, Ak, Bk, Ck, Dk, zk, bk, h0, out, hlast, ckpt, softplus_=delta_softplus,
                       cplx=cplx, ch_per_group=dim // groups, n_chunks=n_chunks, block_d=bd,
                       block_l=bl, num_warps=nw)
        if needs_grad:
            ctx.save_for_backward(uk, dk, Ak, Bk, Ck, Dk, zk, bk, ckpt)
            ctx.meta = (delta_softplus, cplx, groups, n_chunks, bl, initial_state is not None, seq_bwd)
            ctx.orig = (u.dtype, delta.dtype, A.dtype, B, C, None if D is None else D.dtype,
                        None if z is None else z.dtype, None if delta_bias is None else delta_bias.dtype,
                        None if initial_state is None else initial_state.dtype)
        last = torch.view_as_complex(hlast.view(batch, dim, N, 2)) if cplx else hlast
        return out, last

    @staticmethod
    def backward(ctx, gout, glast):
        uk, dk, Ak, Bk, Ck, Dk, zk, bk, ckpt = ctx.saved_tensors
        softplus_, cplx, groups, n_chunks, bl, has_h0, seq_bwd = ctx.meta
        u_dt, d_dt, A_dt, B, C, D_dt, z_dt, b_dt, h0_dt = ctx.orig
        batch, dim, L = uk.shape
        K = 2 if cplx else 1
        N = Ak.shape[1] // K
        if gout is None:
            gout = torch.zeros(batch, dim, L, device=uk.device, dtype=uk.dtype)
        gout = like_rows(gout, uk) if seq_bwd else gout.contiguous()
        gl = None
        if glast is not None:
            gl = (torch.view_as_real(glast.to(torch.complex64)) if cplx else glast.float())
            gl = gl.reshape(batch, dim, K * N).contiguous()
        if seq_bwd:  # Bk, Ck: (batch, groups, L, N) (complex: L, 2N); bl: the checkpoint interval
            gu, gdelta, gz, gA, gB, gC, gD, gbias, gh0 = bwd_seq(
                uk, dk, Ak, Bk, Ck, Dk, zk, bk, ckpt, gout, gl, softplus_=softplus_, groups=groups, ck=bl,
                want_h0=has_h0, cplx=cplx)
            if cplx:  # (batch, groups, L, (re, im), N) -> mamba_ssm's packing (batch, groups, N, 2L)
                gB, gC = (M.unflatten(-1, (2, N)).permute(0, 1, 4, 2, 3).flatten(-2) for M in (gB, gC))
            else:
                gB, gC = gB.transpose(-1, -2), gC.transpose(-1, -2)
        else:
            bd, _, nw = _config("bwd", uk.device)
            bd = pow2_divisor(dim // groups, bd)
            gu, gdelta, gA, gB, gC, gD, gz, gbias, gh0 = launch_bwd(
                uk, dk, Ak, Bk, Ck, Dk, zk, bk, ckpt, gout, gl, softplus_=softplus_, cplx=cplx,
                ch_per_group=dim // groups, n_chunks=n_chunks, block_d=bd, block_l=bl, num_warps=nw,
                want_h0=has_h0)
        if cplx:
            gA = torch.view_as_complex(gA.view(dim, N, 2))
            if B.dim() == 2:
                gB = torch.view_as_complex(gB.view(dim, N, 2))
            if C.dim() == 2:
                gC = torch.view_as_complex(gC.view(dim, N, 2))
            if gh0 is not None:
                gh0 = torch.view_as_complex(gh0.view(batch, dim, N, 2))
        gB = gB.reshape(B.shape).to(B.dtype)
        gC = gC.reshape(C.shape).to(C.dtype)
        return (gu.to(u_dt), gdelta.to(d_dt), gA.to(A_dt), gB, gC,
                None if gD is None else gD.to(D_dt), None if gz is None else gz.to(z_dt),
                None if gbias is None else gbias.to(b_dt), None,
                None if gh0 is None else gh0.to(h0_dt))


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective scan; returns ``(out, last_state)``, both differentiable.

    u, delta, z: (batch, dim, L). A: (dim, N) real or complex. B, C: (batch, N, L),
    (batch, groups, N, L) or (dim, N); with complex A a time-varying B/C is real with interleaved
    (real, imag) on its last axis (length 2L). D, delta_bias: (dim,). initial_state: (batch, dim, N),
    fp32 (complex64 for complex A). last_state: (batch, dim, N) fp32 / complex64.
    """
    return _SelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
