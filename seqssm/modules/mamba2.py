"""The Mamba-2 block (Dao & Gu 2024, section 7.1, Figure 6), with mamba_ssm's parameter names.

z, xBC, Δ = in_proj(h)                      parallel projections at the block start
x, B, C = silu(conv1d(xBC))                 depthwise causal over x, B and C together
y = SSD(x, Δ, A, B, C, D)                    scalar A per head (A = -exp(A_log))
out = out_proj(RMSNorm(y · silu(z)))         gated norm, per group

With ``rope_fraction`` > 0 (``model=mamba2_rotary``), in_proj also gives R = ⌊rope_fraction·N/2⌋
angular rates θ_t per position (shared by the heads, as in mamba_ssm's ``Mamba3``), and the first R
pairs of state dims turn by Δ_t θ_t every step: a complex-valued state with a data-dependent phase,
run as the real SSD on rotated B and C (``seqssm.ops.rotary_ssd``). rope_fraction = 0 is Mamba-2,
with mamba_ssm's exact parameter shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from seqssm.modules.mamba import fp32, init_dt_bias, no_weight_decay
from seqssm.modules.norm import GatedRMSNorm
from seqssm.ops import (
    causal_conv1d_fn,
    causal_conv1d_update,
    mamba_chunk_scan_combined,
    mamba_chunk_scan_rotary,
    rotary_state_update,
    selective_state_update,
)


@dataclass
class Mamba2State:
    """Recurrent state of one Mamba-2 block."""

    conv: torch.Tensor  # (batch, d_inner + 2·ngroups·d_state, d_conv - 1)
    ssm: torch.Tensor  # (batch, heads, headdim, d_state), fp32


class Mamba2(nn.Module):
    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 64,
        ngroups: int = 1,
        chunk_size: int = 256,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        norm_eps: float = 1e-5,
        conv_bias: bool = True,
        bias: bool = False,
        rope_fraction: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        if self.d_inner % headdim:
            raise ValueError(f"Mamba2: expand*d_model={self.d_inner} is not a multiple of headdim={headdim}")
        self.headdim, self.nheads, self.ngroups = headdim, self.d_inner // headdim, ngroups
        if self.nheads % ngroups:
            raise ValueError(f"Mamba2: {self.nheads} heads are not divisible into ngroups={ngroups}")
        self.chunk_size, self.backend = chunk_size, backend
        self.conv_dim = self.d_inner + 2 * ngroups * d_state
        if not 0.0 <= rope_fraction <= 1.0:
            raise ValueError(f"Mamba2: rope_fraction={rope_fraction}: expected a fraction in [0, 1]")
        self.n_angles = int(rope_fraction * d_state) // 2  # rotated pairs of state dims
        if rope_fraction and not self.n_angles:
            raise ValueError(f"Mamba2: rope_fraction={rope_fraction} of d_state={d_state} rotates no pair of dims")

        d_proj = 2 * self.d_inner + 2 * ngroups * d_state + self.nheads + self.n_angles
        self.in_proj = nn.Linear(d_model, d_proj, bias=bias)
        self.conv1d = nn.Conv1d(
            self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, padding=d_conv - 1, bias=conv_bias
        )
        self.dt_bias = nn.Parameter(init_dt_bias(self.nheads, dt_min, dt_max, dt_init_floor))
        A = torch.empty(self.nheads).uniform_(*A_init_range)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.nheads))
        no_weight_decay(self.dt_bias, self.A_log, self.D)
        self.norm = GatedRMSNorm(self.d_inner, eps=norm_eps, group_size=self.d_inner // ngroups, backend=backend)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def _split(self, zxbcdt: torch.Tensor):
        """-> z, xBC, dt, theta (theta has n_angles columns: empty without rotation)."""
        return torch.split(zxbcdt, [self.d_inner, self.conv_dim, self.nheads, self.n_angles], dim=-1)

    def _split_xbc(self, xBC: torch.Tensor):
        gn = self.ngroups * self.d_state
        return torch.split(xBC, [self.d_inner, gn, gn], dim=-1)

    def forward(self, hidden_states: torch.Tensor, state: Mamba2State | None = None, return_state: bool = False):
        """hidden_states: (batch, L, d_model); see ``Mamba.forward`` for ``state``."""
        batch, L, _ = hidden_states.shape
        z, xBC, dt, theta = self._split(self.in_proj(hidden_states))
        xBC, conv_state = causal_conv1d_fn(
            xBC.transpose(1, 2),
            self.conv1d.weight.squeeze(1),
            self.conv1d.bias,
            initial_states=None if state is None else state.conv,
            return_final_states=True,
            activation="silu",
            backend=self.backend,
        )
        x, B, C = self._split_xbc(xBC.transpose(1, 2))
        args = (
            x.reshape(batch, L, self.nheads, self.headdim),
            dt,
            -torch.exp(fp32(self.A_log)),
            B.reshape(batch, L, self.ngroups, self.d_state),
            C.reshape(batch, L, self.ngroups, self.d_state),
        )
        kwargs = dict(
            D=fp32(self.D),
            dt_bias=fp32(self.dt_bias),
            dt_softplus=True,
            initial_states=None if state is None else state.ssm,
            return_final_states=True,
            backend=self.backend,
        )
        if self.n_angles:
            y, ssm_state = mamba_chunk_scan_rotary(*args, theta, self.chunk_size, **kwargs)
        else:
            y, ssm_state = mamba_chunk_scan_combined(*args, self.chunk_size, **kwargs)
        y = self.norm(y.reshape(batch, L, self.d_inner), z)
        out = self.out_proj(y)
        return (out, Mamba2State(conv_state, ssm_state)) if return_state else out

    def init_state(self, batch: int, device: torch.device | None = None, dtype=None) -> Mamba2State:
        dtype = dtype or self.in_proj.weight.dtype
        return Mamba2State(
            torch.zeros(batch, self.conv_dim, self.d_conv - 1, device=device, dtype=dtype),
            torch.zeros(
                batch,
                self.nheads,
                self.headdim,
                self.d_state,
                device=device,
                dtype=torch.promote_types(dtype, torch.float32),
            ),
        )

    def step(self, hidden_states: torch.Tensor, state: Mamba2State) -> torch.Tensor:
        """One token: (batch, d_model) -> (batch, d_model); ``state`` updated in place."""
        batch = hidden_states.shape[0]
        z, xBC, dt, theta = self._split(self.in_proj(hidden_states))
        xBC = causal_conv1d_update(
            xBC, state.conv, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu", backend=self.backend
        )
        x, B, C = self._split_xbc(xBC)
        p, n = self.headdim, self.d_state
        if self.n_angles:
            y = rotary_state_update(
                state.ssm,
                x.reshape(batch, self.nheads, p),
                dt,
                -torch.exp(fp32(self.A_log)),
                B.reshape(batch, self.ngroups, n),
                C.reshape(batch, self.ngroups, n),
                theta,
                fp32(self.D),
                fp32(self.dt_bias),
                dt_softplus=True,
                backend=self.backend,
            )
            return self.out_proj(self.norm(y.reshape(batch, self.d_inner), z))
        # A as A_log and the parameters as stride-0 views in their own dtype: no kernels for them a token
        y = selective_state_update(
            state.ssm,
            x.reshape(batch, self.nheads, p),
            dt[..., None].expand(batch, self.nheads, p),
            self.A_log[:, None, None].expand(self.nheads, p, n),
            B.reshape(batch, self.ngroups, n),
            C.reshape(batch, self.ngroups, n),
            self.D[:, None].expand(self.nheads, p),
            dt_bias=self.dt_bias[:, None].expand(self.nheads, p),
            dt_softplus=True,
            A_is_log=True,
            backend=self.backend,
        )
        return self.out_proj(self.norm(y.reshape(batch, self.d_inner), z))
