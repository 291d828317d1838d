"""Reverse-complement parameter sharing (``model.rc_equivariant=true``), after Caduceus's RCPS
(Schiff et al. 2024, section 3.2; Zhou et al. 2021, "Towards a better understanding of
reverse-complement equivariance for deep learning models in genomics").

A DNA sequence x and its reverse complement rc(x) (reverse the order, swap A<->T and C<->G) are the
same molecule read from its two strands. The RC-equivariant backbone runs the same layers (shared
parameters) on both strands and stacks the results along channels:

    H(x) = [ F(x) ; flip(F(rc(x))) ]                      (batch, L, 2·d_model)

with F the plain backbone and flip the reversal of the length axis. Defining the reverse complement
of a hidden sequence as RC([a ; b]) = [flip(b) ; flip(a)] (swap the strand halves, reverse the
positions), H is equivariant:

    H(rc(x)) = [ F(rc(x)) ; flip(F(x)) ] = RC(H(x))

(Caduceus flips the channels of each half instead of swapping halves: the same group action up to a
fixed permutation of the channels.) A head that is invariant to RC — e.g. the mean over positions
of the two halves summed — then gives the same output on both strands exactly
(``tests/test_dna_models.py``). Both strands run in one batch of 2·batch sequences.

The strand F(rc(x)) at position t has seen the bases of x at t and after (downstream): an
RC-equivariant model is not causal and cannot generate.
"""

from __future__ import annotations

import torch

from seqssm.errors import ConfigError
from seqssm.genome import reverse_complement

NO_STATE = (
    "model.rc_equivariant=true: the reverse-complement strand reads the sequence from its end; such a model "
    "cannot run step by step or piece by piece (generation, streaming, chunk_len)"
)


def both_strands(input_ids: torch.Tensor, states: list | None = None, return_states: bool = False) -> torch.Tensor:
    """(batch, L) token ids (A, C, G, T, N, PAD of seqssm.genome) -> (2·batch, L): x, then rc(x)."""
    if states is not None or return_states:
        raise ConfigError(NO_STATE)
    return torch.cat([input_ids, reverse_complement(input_ids)], dim=0)


def stack_strands(hidden: torch.Tensor) -> torch.Tensor:
    """(2·batch, L, d) from ``both_strands`` -> (batch, L, 2·d) = [F(x) ; flip(F(rc(x)))]."""
    fwd, rc = hidden.chunk(2, dim=0)
    return torch.cat([fwd, rc.flip(1)], dim=-1)


def rc_hidden(hidden: torch.Tensor) -> torch.Tensor:
    """The reverse complement of a stacked hidden sequence: RC([a ; b]) = [flip(b) ; flip(a)]."""
    a, b = hidden.chunk(2, dim=-1)
    return torch.cat([b.flip(1), a.flip(1)], dim=-1)


def strand_sum(hidden: torch.Tensor) -> torch.Tensor:
    """(batch, L, 2·d) -> (batch, L, d): a + flip-free sum of the two halves, used by pooled heads.
    Its mean over positions is RC-invariant: mean_t(a + b) of RC(h) = mean_t(flip(b) + flip(a))."""
    a, b = hidden.chunk(2, dim=-1)
    return a + b
