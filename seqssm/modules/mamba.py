"""The Mamba-1 block (Gu & Dao 2023, section 3.4, Figure 3), with mamba_ssm's parameter names.

    x, z = in_proj(h)                         (batch, L, 2·d_inner)
    x = silu(conv1d(x))                       depthwise causal, width d_conv
    Δ, B, C = x_proj(x)                       Δ: dt_rank, B/C: d_state (complex: 2·d_state each)
    Δ = softplus(dt_proj(Δ) + dt_bias)
    y = SelectiveScan(x, Δ, A, B, C, D) · silu(z)
    out = out_proj(y)

A is S4D-Real, A_n = -(n+1) (paper section 3.6), stored as ``A_log``. With ``complex=True``
A is S4D-Lin, A_n = -1/2 + iπn (Gu et al. 2022, "On the Parameterization and Initialization of
Diagonal State Space Models"), stored as ``A_log`` (log of -Re A) and ``A_imag``; B and C are
complex and y = 2 Re(C h).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqssm.ops import causal_conv1d_fn, causal_conv1d_update, selective_scan_fn, selective_state_update


def _rows(weight: torch.Tensor, inputs: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """inputs (batch, L, k) projected by weight (m, k) as (batch, m, L): the (m, batch·L) product
    W·inputsᵀ (+ bias) viewed as (batch, m, L), positions adjacent."""
    batch, L, k = inputs.shape
    out = weight @ inputs.reshape(batch * L, k).t()
    if bias is not None:
        out = out + bias[:, None]
    return out.view(-1, batch, L).permute(1, 0, 2)


@dataclass
class MambaState:
    """Recurrent state of one Mamba block: the last d_conv-1 conv inputs and the SSM state."""

    conv: torch.Tensor  # (batch, d_inner, d_conv - 1)
    ssm: torch.Tensor  # (batch, d_inner, d_state), fp32 (complex64 for complex A)


def init_dt_bias(n: int, dt_min: float, dt_max: float, dt_init_floor: float) -> torch.Tensor:
    """Bias such that softplus(bias) is log-uniform in [dt_min, dt_max] (paper section 3.6)."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))  # inverse of softplus


def fp32(t: torch.Tensor) -> torch.Tensor:
    """At least fp32: SSM parameters (A, D, dt bias) run in fp32 under bf16/fp16, float64 stays."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def no_weight_decay(*params: nn.Parameter) -> None:
    for p in params:
        p._no_weight_decay = True


class Mamba(nn.Module):
    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        complex: bool = False,
        conv_bias: bool = True,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.complex = complex
        self.backend = backend
        d_inner = self.d_inner

        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias)
        bc_width = 2 * d_state if complex else d_state
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * bc_width, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        dt_std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -dt_std, dt_std)
        with torch.no_grad():
            self.dt_proj.bias.copy_(init_dt_bias(d_inner, dt_min, dt_max, dt_init_floor))
        self.dt_proj.bias._no_reinit = True

        n = torch.arange(d_state, dtype=torch.float32)
        if complex:
            self.A_log = nn.Parameter(torch.full((d_inner, d_state), math.log(0.5)))
            self.A_imag = nn.Parameter((math.pi * n).repeat(d_inner, 1))
            no_weight_decay(self.A_imag)
        else:
            self.A_log = nn.Parameter(torch.log(n + 1).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        no_weight_decay(self.A_log, self.D, self.dt_proj.bias)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)

    def A(self) -> torch.Tensor:
        A_real = -torch.exp(fp32(self.A_log))
        return torch.complex(A_real, fp32(self.A_imag)) if self.complex else A_real

    def _split_x_proj(self, x_dbl: torch.Tensor):
        """x_proj output (..., dt_rank + 2·bc_width) -> Δ (..., dt_rank), B, C (..., N[, 2])."""
        bc_width = 2 * self.d_state if self.complex else self.d_state
        dt, B, C = torch.split(x_dbl, [self.dt_rank, bc_width, bc_width], dim=-1)
        if self.complex:
            B, C = B.unflatten(-1, (self.d_state, 2)), C.unflatten(-1, (self.d_state, 2))
        return dt, B, C

    def forward(self, hidden_states: torch.Tensor, state: MambaState | None = None, return_state: bool = False):
        """hidden_states: (batch, L, d_model). ``state`` continues from an earlier piece of the same
        sequence; with ``return_state`` also returns the state after the last token."""
        batch, L, _ = hidden_states.shape
        # (batch, d_inner, L) each, laid out as the (2·d_inner, batch·L) product W·Hᵀ (mamba_ssm's layout):
        # positions adjacent, so the conv and the scan read x, z and Δ where they are, and x_proj and out_proj
        # take the transposed views without copies
        xz = _rows(self.in_proj.weight, hidden_states, self.in_proj.bias)
        x, z = xz.chunk(2, dim=1)
        x, conv_state = causal_conv1d_fn(
            x,
            self.conv1d.weight.squeeze(1),
            self.conv1d.bias,
            initial_states=None if state is None else state.conv,
            return_final_states=True,
            activation="silu",
            backend=self.backend,
        )
        dt, B, C = self._split_x_proj(self.x_proj(x.transpose(1, 2)))
        dt = _rows(self.dt_proj.weight, dt)  # (batch, d_inner, L), laid out as x; bias in the scan
        if self.complex:  # (batch, L, N, 2) -> mamba_ssm's packing (batch, N, 2L)
            B = B.permute(0, 2, 1, 3).reshape(batch, self.d_state, 2 * L)
            C = C.permute(0, 2, 1, 3).reshape(batch, self.d_state, 2 * L)
        else:
            B, C = B.transpose(1, 2), C.transpose(1, 2)  # (batch, N, L)
        y, ssm_state = selective_scan_fn(
            x,
            dt,
            self.A(),
            B.contiguous(),
            C.contiguous(),
            fp32(self.D),
            z=z,
            delta_bias=fp32(self.dt_proj.bias),
            delta_softplus=True,
            return_last_state=True,
            initial_state=None if state is None else state.ssm,
            backend=self.backend,
        )
        out = self.out_proj(y.transpose(1, 2))
        return (out, MambaState(conv_state, ssm_state)) if return_state else out

    def init_state(self, batch: int, device: torch.device | None = None, dtype=None) -> MambaState:
        dtype = dtype or self.in_proj.weight.dtype
        ssm_dtype = torch.promote_types(dtype, torch.float32)  # fp32 state, float64 for float64 models
        if self.complex:
            ssm_dtype = torch.complex128 if ssm_dtype == torch.float64 else torch.complex64
        return MambaState(
            torch.zeros(batch, self.d_inner, self.d_conv - 1, device=device, dtype=dtype),
            torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=ssm_dtype),
        )

    def step(self, hidden_states: torch.Tensor, state: MambaState) -> torch.Tensor:
        """One token: hidden_states (batch, d_model) -> (batch, d_model); ``state`` updated in place."""
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)
        x = causal_conv1d_update(
            x, state.conv, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu", backend=self.backend
        )
        dt, B, C = self._split_x_proj(self.x_proj(x))
        dt = F.linear(dt, self.dt_proj.weight)
        if self.complex:
            B, C = torch.view_as_complex(fp32(B).contiguous()), torch.view_as_complex(fp32(C).contiguous())
        # real A goes in as A_log and the parameters in their own dtype: no kernels for them a token
        y = selective_state_update(
            state.ssm,
            x,
            dt,
            self.A() if self.complex else self.A_log,
            B,
            C,
            self.D,
            z=z,
            dt_bias=self.dt_proj.bias,
            dt_softplus=True,
            A_is_log=not self.complex,
            backend=self.backend,
        )
        return self.out_proj(y)
