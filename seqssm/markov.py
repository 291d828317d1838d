"""Order-k Markov chains over a small alphabet: the baseline a sequence model must beat.

P(x_t | x_{t-k..t-1}) = (count(context, x_t) + α) / (count(context) + α·V), fitted by counting
on training sequences; where a window gives fewer than k bases of context, the chain of that
shorter order is used (so the baseline sees exactly the context the model sees).
"""

from __future__ import annotations

import torch


class MarkovChain:
    def __init__(self, order: int, vocab: int, alpha: float = 1.0) -> None:
        self.order, self.vocab, self.alpha = order, vocab, alpha
        self.counts = [torch.zeros(vocab**j, vocab, dtype=torch.float64) for j in range(order + 1)]

    @staticmethod
    def _context_ids(seq: torch.Tensor, j: int, vocab: int) -> torch.Tensor:
        """Index of the j bases before each position t >= j (base-``vocab`` number)."""
        idx = torch.zeros(seq.numel() - j, dtype=torch.int64)
        for i in range(j):
            idx = idx * vocab + seq[i : seq.numel() - j + i]
        return idx

    def fit(self, seq: torch.Tensor) -> MarkovChain:
        """Add the transitions of one token sequence (values < vocab) to the counts."""
        for j in range(self.order + 1):
            if seq.numel() <= j:
                continue
            ctx = self._context_ids(seq, j, self.vocab)
            flat = ctx * self.vocab + seq[j:]
            self.counts[j].view(-1).index_add_(0, flat, torch.ones_like(flat, dtype=torch.float64))
        return self

    def _prob(self, j: int, ctx: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        rows = self.counts[j][ctx]
        return (rows.gather(1, nxt[:, None]).squeeze(1) + self.alpha) / (rows.sum(1) + self.alpha * self.vocab)

    def nll(self, seq: torch.Tensor) -> tuple[float, int]:
        """Sum of -log P over positions 1.. of ``seq`` and their count (position 0 has no context
        in the model's windows either: it is an input, never a target)."""
        k = self.order
        probs = []
        for t in range(1, min(k, seq.numel())):  # the first positions: shorter context
            probs.append(self._prob(t, self._context_ids(seq[: t + 1], t, self.vocab)[:1], seq[t : t + 1]))
        if seq.numel() > k:
            probs.append(self._prob(k, self._context_ids(seq, k, self.vocab), seq[k:]))
        p = torch.cat(probs) if probs else torch.zeros(0, dtype=torch.float64)
        return float(-torch.log(p).sum()), p.numel()
