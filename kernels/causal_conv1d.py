"""Depthwise causal conv1d (width 2-4, optional SiLU) in Triton, forward, backward and decode step.

    pre[b, d, t] = bias[d] + Σ_{k<W} weight[d, k] · x[b, d, t - (W-1) + k]      (x before 0: the
    out = act(pre),  act = identity or silu                                      initial states)

With ``seq_idx`` a tap is dropped where seq_idx at the tap's position differs from seq_idx at t
(the initial states count as part of the first sequence). Backward, with g = ∂L/∂pre::

    ∂L/∂x[p] = Σ_k weight[k] g[p + (W-1) - k]        ∂L/∂weight[k] = Σ_t g[t] x[t - (W-1) + k]
    ∂L/∂bias = Σ_t g[t]

One program owns a (BLOCK_D, BLOCK_L) tile; the W taps are W shifted loads of the same rows (L1
hits). The backward recomputes ``pre`` at the W shifts it needs instead of storing it: from the 2W - 1
shifted tiles of x it loads once (rows with adjacent positions), or from W tap loads per shift
(channels-last, where that measured faster; ``conv1d_bwd_kernel``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _raw(x_ptr, init_ptr, row, s_l, irow, q, m_d, L, W: tl.constexpr, HAS_INIT: tl.constexpr):
    """x at positions q (BLOCK_L,) for rows ``row`` (BLOCK_D, 1; positions ``s_l`` apart), from the initial
    states where q < 0, zero outside."""
    mq = (q >= 0) & (q < L)
    v = tl.load(x_ptr + row + q.to(tl.int64)[None, :] * s_l, mask=m_d[:, None] & mq[None, :],
                other=0.0).to(tl.float32)
    if HAS_INIT:
        mi = (q < 0) & (q >= -(W - 1))
        v += tl.load(init_ptr + irow + (q + W - 1)[None, :], mask=m_d[:, None] & mi[None, :],
                     other=0.0).to(tl.float32)
    return v


@triton.jit
def _seq_at(seq_ptr, sb, q, L):
    """seq_idx at positions q (the initial states belong to the first position's sequence); -1 past the end."""
    return tl.load(seq_ptr + sb + tl.minimum(tl.maximum(q, 0), L - 1), mask=q < L, other=-1)


@triton.jit
def _tap(x_ptr, init_ptr, seq_ptr, row, s_l, irow, sb, t, p, m_d, L,
         W: tl.constexpr, HAS_INIT: tl.constexpr, HAS_SEQ: tl.constexpr, seq_t):
    """``_raw`` at positions p, zero where (seq_idx) p lies in another sequence than t."""
    v = _raw(x_ptr, init_ptr, row, s_l, irow, p, m_d, L, W, HAS_INIT)
    if HAS_SEQ:
        v = tl.where((_seq_at(seq_ptr, sb, p, L) == seq_t)[None, :], v, 0.0)
    return v


@triton.jit
def _pre(x_ptr, w_ptr, b_ptr, init_ptr, seq_ptr, row, s_l, irow, sb, offs_d, t, m_d, L,
         W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_INIT: tl.constexpr, HAS_SEQ: tl.constexpr):
    """The pre-activation at positions t (any, masked outside [0, L))."""
    seq_t = t * 0
    if HAS_SEQ:
        seq_t = tl.load(seq_ptr + sb + tl.minimum(tl.maximum(t, 0), L - 1))
    acc = 0.0
    for k in tl.static_range(W):
        wk = tl.load(w_ptr + offs_d * W + k, mask=m_d, other=0.0).to(tl.float32)
        acc += wk[:, None] * _tap(x_ptr, init_ptr, seq_ptr, row, s_l, irow, sb, t, t - (W - 1) + k,
                                  m_d, L, W, HAS_INIT, HAS_SEQ, seq_t)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_d, mask=m_d, other=0.0).to(tl.float32)[:, None]
    return acc


@triton.jit
def conv1d_fwd_kernel(x_ptr, w_ptr, b_ptr, init_ptr, seq_ptr, out_ptr, dim, L,
                      s_xb, s_xd, s_xl, s_ob, s_od, s_ol,
                      W: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
                      HAS_BIAS: tl.constexpr, HAS_INIT: tl.constexpr, HAS_SEQ: tl.constexpr,
                      SILU: tl.constexpr):
    t = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    b64 = tl.program_id(2).to(tl.int64)
    m_d = offs_d < dim
    row = b64 * s_xb + offs_d.to(tl.int64)[:, None] * s_xd
    irow = (b64 * dim + offs_d.to(tl.int64)[:, None]) * (W - 1)
    sb = b64 * L
    acc = _pre(x_ptr, w_ptr, b_ptr, init_ptr, seq_ptr, row, s_xl, irow, sb, offs_d, t, m_d, L,
               W, HAS_BIAS, HAS_INIT, HAS_SEQ)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    m = m_d[:, None] & (t < L)[None, :]
    o = b64 * s_ob + offs_d.to(tl.int64)[:, None] * s_od + t.to(tl.int64)[None, :] * s_ol
    tl.store(out_ptr + o, acc.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def _pick(j: tl.constexpr, v0, v1, v2, v3, v4, v5, v6):
    """v_j for a compile-time j (a register choice, no code)."""
    r = v0
    if j == 1:
        r = v1
    if j == 2:
        r = v2
    if j == 3:
        r = v3
    if j == 4:
        r = v4
    if j == 5:
        r = v5
    if j == 6:
        r = v6
    return r


@triton.jit
def conv1d_bwd_kernel(x_ptr, w_ptr, b_ptr, init_ptr, seq_ptr, gout_ptr, gx_ptr, gw_ptr, gb_ptr,
                      dim, L, s_xb, s_xd, s_xl, s_gb, s_gd, s_gl, s_hb, s_hd, s_hl,
                      W: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
                      HAS_BIAS: tl.constexpr, HAS_INIT: tl.constexpr, HAS_SEQ: tl.constexpr,
                      SILU: tl.constexpr, WINDOW: tl.constexpr):
    """gx for the tile's positions p; gw, gbias partial sums over the tile's outputs t, added
    atomically into fp32 (dim, W) and (dim,).

    The outputs t = p + s (s < W) that read x[p] need pre(t) = Σ_k w_k x[t - (W-1) + k] (+ bias). WINDOW:
    x at the 2W - 1 positions p - (W-1) .. p + (W-1) is loaded once (x_0 .. x_{2W-2}) and pre(p + s) =
    Σ_k w_k x_{s+k} formed from those tiles (1,024-element tiles: they are all live at once); else pre is
    recomputed at each shift from W tap loads (L1 hits). H200: WINDOW 0.51 vs 0.72 ms for rows with adjacent
    positions (Mamba block, 4 x 8K); for channels-last x the recomputing form with the forward's 64 x 64
    tiles, 0.84 ms against 2.55 for WINDOW with 64 x 16 tiles (4x the programs adding into the same
    (dim, W) entries)."""
    p = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    b64 = tl.program_id(2).to(tl.int64)
    m_d = offs_d < dim
    row = b64 * s_xb + offs_d.to(tl.int64)[:, None] * s_xd
    grow = b64 * s_gb + offs_d.to(tl.int64)[:, None] * s_gd
    irow = (b64 * dim + offs_d.to(tl.int64)[:, None]) * (W - 1)
    sb = b64 * L
    m_p = m_d[:, None] & (p < L)[None, :]
    seq_p = p * 0
    if WINDOW:
        q0 = p - (W - 1)
        # the window x_0 .. x_{2W-2} (W = 2, 3, 4: 3, 5 or 7 tiles); unused names alias x_0
        x0 = _raw(x_ptr, init_ptr, row, s_xl, irow, q0, m_d, L, W, HAS_INIT)
        x1 = _raw(x_ptr, init_ptr, row, s_xl, irow, q0 + 1, m_d, L, W, HAS_INIT)
        x2 = _raw(x_ptr, init_ptr, row, s_xl, irow, q0 + 2, m_d, L, W, HAS_INIT)
        x3, x4, x5, x6 = x0, x0, x0, x0
        if W >= 3:
            x3 = _raw(x_ptr, init_ptr, row, s_xl, irow, q0 + 3, m_d, L, W, HAS_INIT)
            x4 = _raw(x_ptr, init_ptr, row, s_xl, irow, q0 + 4, m_d, L, W, HAS_INIT)
        if W >= 4:
            x5 = _raw(x_ptr, init_ptr, row, s_xl, irow, q0 + 5, m_d, L, W, HAS_INIT)
            x6 = _raw(x_ptr, init_ptr, row, s_xl, irow, q0 + 6, m_d, L, W, HAS_INIT)
        s0, s1, s2, s3, s4, s5, s6 = seq_p, seq_p, seq_p, seq_p, seq_p, seq_p, seq_p
        if HAS_SEQ:
            s0 = _seq_at(seq_ptr, sb, q0, L)
            s1 = _seq_at(seq_ptr, sb, q0 + 1, L)
            s2 = _seq_at(seq_ptr, sb, q0 + 2, L)
            if W >= 3:
                s3 = _seq_at(seq_ptr, sb, q0 + 3, L)
                s4 = _seq_at(seq_ptr, sb, q0 + 4, L)
            if W >= 4:
                s5 = _seq_at(seq_ptr, sb, q0 + 5, L)
                s6 = _seq_at(seq_ptr, sb, q0 + 6, L)
        w0 = tl.load(w_ptr + offs_d * W, mask=m_d, other=0.0).to(tl.float32)
        w1 = tl.load(w_ptr + offs_d * W + 1, mask=m_d, other=0.0).to(tl.float32)
        w2, w3 = w0, w0
        if W >= 3:
            w2 = tl.load(w_ptr + offs_d * W + 2, mask=m_d, other=0.0).to(tl.float32)
        if W >= 4:
            w3 = tl.load(w_ptr + offs_d * W + 3, mask=m_d, other=0.0).to(tl.float32)
        bias = tl.zeros((BLOCK_D,), tl.float32)
        if HAS_BIAS:
            bias = tl.load(b_ptr + offs_d, mask=m_d, other=0.0).to(tl.float32)
        seq_p = _pick(W - 1, s0, s1, s2, s3, s4, s5, s6)
    elif HAS_SEQ:
        seq_p = _seq_at(seq_ptr, sb, p, L)
    gx = tl.zeros((BLOCK_D, BLOCK_L), tl.float32)
    for s in tl.static_range(W):
        # output position t = p + s reads x[p] through tap k = W-1-s
        t = p + s
        seq_t = t * 0
        if WINDOW:
            seq_t = _pick(s + W - 1, s0, s1, s2, s3, s4, s5, s6)
        elif HAS_SEQ:
            seq_t = _seq_at(seq_ptr, sb, t, L)
        m_t = m_d[:, None] & (t < L)[None, :]
        g = tl.load(gout_ptr + grow + t.to(tl.int64)[None, :] * s_gl, mask=m_t, other=0.0).to(tl.float32)
        if SILU:
            if WINDOW:
                pre = tl.zeros((BLOCK_D, BLOCK_L), tl.float32)
                for k in tl.static_range(W):
                    xv = _pick(s + k, x0, x1, x2, x3, x4, x5, x6)
                    if HAS_SEQ:
                        xv = tl.where((_pick(s + k, s0, s1, s2, s3, s4, s5, s6) == seq_t)[None, :], xv, 0.0)
                    pre += _pick(k, w0, w1, w2, w3, w3, w3, w3)[:, None] * xv
                if HAS_BIAS:
                    pre += bias[:, None]
            else:
                pre = _pre(x_ptr, w_ptr, b_ptr, init_ptr, seq_ptr, row, s_xl, irow, sb, offs_d, t, m_d, L,
                           W, HAS_BIAS, HAS_INIT, HAS_SEQ)
            sg = tl.sigmoid(pre)
            g = g * sg * (1.0 + pre * (1.0 - sg))
        if HAS_SEQ:
            g_x = tl.where((seq_t == seq_p)[None, :], g, 0.0)
        else:
            g_x = g
        if WINDOW:
            wk = _pick(W - 1 - s, w0, w1, w2, w3, w3, w3, w3)
        else:
            wk = tl.load(w_ptr + offs_d * W + (W - 1 - s), mask=m_d, other=0.0).to(tl.float32)
        gx += wk[:, None] * g_x
        if s == 0:  # the tile's own outputs: weight and bias gradients
            for k in tl.static_range(W):
                if WINDOW:
                    xv = _pick(k, x0, x1, x2, x3, x4, x5, x6)
                    if HAS_SEQ:
                        xv = tl.where((_pick(k, s0, s1, s2, s3, s4, s5, s6) == seq_p)[None, :], xv, 0.0)
                else:
                    xv = _tap(x_ptr, init_ptr, seq_ptr, row, s_xl, irow, sb, p, p - (W - 1) + k, m_d, L,
                              W, HAS_INIT, HAS_SEQ, seq_p)
                tl.atomic_add(gw_ptr + offs_d * W + k, tl.sum(g * xv, 1), mask=m_d, sem="relaxed")
            if HAS_BIAS:
                tl.atomic_add(gb_ptr + offs_d, tl.sum(g, 1), mask=m_d, sem="relaxed")
    h = b64 * s_hb + offs_d.to(tl.int64)[:, None] * s_hd + p.to(tl.int64)[None, :] * s_hl
    tl.store(gx_ptr + h, gx.to(gx_ptr.dtype.element_ty), mask=m_p)


@triton.jit
def conv1d_update_kernel(x_ptr, state_ptr, w_ptr, b_ptr, out_ptr, dim, s_xb, s_ob, s_sb, s_sd,
                         W: tl.constexpr, BLOCK_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                         SILU: tl.constexpr):
    offs_d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    b64 = tl.program_id(1).to(tl.int64)
    m_d = offs_d < dim
    xv = tl.load(x_ptr + b64 * s_xb + offs_d, mask=m_d, other=0.0).to(tl.float32)
    sp = state_ptr + b64 * s_sb + offs_d * s_sd
    acc = tl.load(w_ptr + offs_d * W + (W - 1), mask=m_d, other=0.0).to(tl.float32) * xv
    for j in tl.static_range(W - 1):  # window = (state[0], ..., state[W-2], x)
        sj = tl.load(sp + j, mask=m_d, other=0.0)
        acc += tl.load(w_ptr + offs_d * W + j, mask=m_d, other=0.0).to(tl.float32) * sj.to(tl.float32)
        if j > 0:
            tl.store(sp + (j - 1), sj, mask=m_d)
    tl.store(sp + (W - 2), xv.to(state_ptr.dtype.element_ty), mask=m_d)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_d, mask=m_d, other=0.0).to(tl.float32)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(out_ptr + b64 * s_ob + offs_d, acc.to(out_ptr.dtype.element_ty), mask=m_d)


def _channels_last(x: torch.Tensor) -> bool:
    """x (batch, dim, L) with its channels adjacent in memory, e.g. a transposed (batch, L, dim) slice."""
    return x.stride(1) == 1 and x.stride(2) != 1


# Tiles of channels-last x (BLOCK_D channels x BLOCK_L positions). Mamba2 block fwd+bwd (H200, graph, 4 x 4K /
# 4 x 8K; bench/results/ssd_chunks_2026-12-04_h200_conv_tiles.md): 64 x 64 2.82 / 5.43 ms, 128 x 32 2.86 / 5.50,
# 32 x 128 2.81 / 5.39, 64 x 32 2.89 / 5.70, 256 x 16 3.09 / 5.95.
LAST_BLOCK_D = 64
LAST_BLOCK_L = 64


def _blocks(x: torch.Tensor) -> tuple[int, int]:
    """(BLOCK_D, BLOCK_L): long runs along the axis that is contiguous in memory."""
    if not x.is_cuda:
        return 4, 16
    return (LAST_BLOCK_D, LAST_BLOCK_L) if _channels_last(x) else (4, 256)




def _empty_like(x: torch.Tensor) -> torch.Tensor:
    """A new (batch, dim, L) tensor laid out as x: channels-last stays channels-last (no transposing copy
    on the way in or out of the conv when its neighbours are (batch, L, dim)), and a dense x keeps its
    strides (e.g. mamba_ssm's (dim, batch·L) projection viewed as (batch, dim, L))."""
    b, d, L = x.shape
    if _channels_last(x):
        return torch.empty(b, L, d, device=x.device, dtype=x.dtype).transpose(1, 2)
    return torch.empty_like(x)


def _fwd(x, weight, bias, seq_idx, init, silu: bool) -> torch.Tensor:
    batch, dim, L = x.shape
    W = weight.shape[1]
    out = _empty_like(x)
    bd, bl = _blocks(x)
    grid = (triton.cdiv(L, bl), triton.cdiv(dim, bd), batch)
    conv1d_fwd_kernel[grid](x, weight, bias, init, seq_idx, out, dim, L, *x.stride(), *out.stride(),
                            W=W, BLOCK_D=bd, BLOCK_L=bl,
                            HAS_BIAS=bias is not None, HAS_INIT=init is not None,
                            HAS_SEQ=seq_idx is not None, SILU=silu, num_warps=4)
    return out


class _CausalConv1d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, seq_idx, initial_states, silu):
        batch, dim, L = x.shape
        W = weight.shape[1]
        xk = x if x.stride(1) == 1 or x.stride(2) == 1 else x.contiguous()  # any batch stride
        wk = weight.contiguous()
        bk = None if bias is None else bias.contiguous()
        sk = None if seq_idx is None else seq_idx.to(torch.int32).contiguous()
        ik = None if initial_states is None else initial_states.to(x.dtype).contiguous()
        out = _fwd(xk, wk, bk, sk, ik, silu)
        if L >= W - 1:
            final = xk[:, :, L - (W - 1):].clone()
        else:
            past = ik if ik is not None else x.new_zeros(batch, dim, W - 1)
            final = torch.cat([past, xk], -1)[:, :, -(W - 1):].contiguous()
        ctx.save_for_backward(xk, wk, bk, sk, ik)
        ctx.silu = silu
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return out, final

    @staticmethod
    def backward(ctx, gout, gfinal):
        xk, wk, bk, sk, ik = ctx.saved_tensors
        batch, dim, L = xk.shape
        W = wk.shape[1]
        gout = torch.zeros_like(xk) if gout is None else gout
        if gout.stride(1) != 1 and gout.stride(2) != 1:
            gout = gout.contiguous()
        gx = _empty_like(xk)
        gw = torch.zeros(dim, W, device=xk.device, dtype=torch.float32)
        gb = torch.zeros(dim, device=xk.device, dtype=torch.float32) if bk is not None else None
        bd, bl = _blocks(xk)
        grid = (triton.cdiv(L, bl), triton.cdiv(dim, bd), batch)
        conv1d_bwd_kernel[grid](xk, wk, bk, ik, sk, gout, gx, gw, gb, dim, L, *xk.stride(), *gout.stride(),
                                *gx.stride(), W=W, BLOCK_D=bd, BLOCK_L=bl, HAS_BIAS=bk is not None,
                                HAS_INIT=ik is not None, HAS_SEQ=sk is not None, SILU=ctx.silu,
                                WINDOW=not _channels_last(xk), num_warps=4)
        ginit = None
        if ik is not None and ctx.needs_input_grad[4]:
            ginit = _init_grad(xk, wk, bk, sk, ik, gout, ctx.silu)
        if gfinal is not None:  # final states are the last W-1 inputs (initial states if L short)
            n = min(L, W - 1)
            gx[:, :, L - n:] += gfinal[:, :, W - 1 - n:].to(gx.dtype)
            if ginit is not None and n < W - 1:
                ginit[:, :, n:] += gfinal[:, :, : W - 1 - n].to(ginit.dtype)
        w_dt, b_dt = ctx.dtypes
        return gx, gw.to(w_dt), None if gb is None else gb.to(b_dt), None, ginit, None


def _init_grad(x, w, b, seq, init, gout, silu: bool) -> torch.Tensor:
    """Gradient of the initial states: only outputs t < W-1 read them, so differentiate the
    reference on that short head."""
    from seqssm.ops.reference.conv1d import causal_conv1d_ref

    n = min(x.shape[-1], w.shape[1] - 1)
    with torch.enable_grad():
        i = init.detach().float().requires_grad_()
        out, _ = causal_conv1d_ref(x[:, :, :n].float(), w.float(), None if b is None else b.float(),
                                   None if seq is None else seq[:, :n], i, "silu" if silu else None)
        (g,) = torch.autograd.grad(out, i, gout[:, :, :n].float())
    return g.to(init.dtype)


def causal_conv1d_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    activation: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (batch, dim, L); weight: (dim, width) with width 2-4; bias: (dim,); seq_idx: (batch, L);
    initial_states: (batch, dim, width - 1); activation None / "silu" / "swish". Returns
    ``(out, final_states)``, both differentiable (final_states: the last width - 1 inputs)."""
    if not 2 <= weight.shape[1] <= 4:
        raise ValueError(f"width {weight.shape[1]}: the Triton conv supports 2-4")
    silu = activation in ("silu", "swish")
    return _CausalConv1d.apply(x, weight, bias, seq_idx, initial_states, silu)


def causal_conv1d_update_triton(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """One decode step. x: (batch, dim) (or (batch, dim, l): l steps in turn); conv_state
    (batch, dim, width - 1), contiguous on its last axis, updated in place. Returns out like x."""
    if x.dim() == 3:
        return torch.stack([causal_conv1d_update_triton(x[:, :, i], conv_state, weight, bias, activation)
                            for i in range(x.shape[-1])], -1)
    batch, dim = x.shape
    W = weight.shape[1]
    if conv_state.stride(-1) != 1:
        raise ValueError("conv_state must be contiguous on its last axis")
    x = x.contiguous() if x.stride(-1) != 1 else x
    # x may be a view into a wider projection (row stride > dim): the output gets its own layout.
    out = torch.empty(batch, dim, dtype=x.dtype, device=x.device)
    bd = 128 if x.is_cuda else 16
    conv1d_update_kernel[(triton.cdiv(dim, bd), batch)](
        x, conv_state, weight.contiguous(), bias, out, dim, x.stride(0), out.stride(0), conv_state.stride(0),
        conv_state.stride(1), W=W, BLOCK_D=bd, HAS_BIAS=bias is not None,
        SILU=activation in ("silu", "swish"), num_warps=4)
    return out
