"""Sample-quality scores of a generative model from a classifier's view of its samples, as SaShiMi
(Goel et al. 2022, section 5.1 and appendix C.3) and the Mamba paper (Gu & Dao 2023, table 4)
report on SC09. p(y|x) are the classifier's class probabilities for a sample x, p(y) = E_x p(y|x)
their mean over the samples, H the entropy (natural logarithms throughout).

- IS (Salimans et al. 2016):           IS  = exp( E_x KL(p(y|x) || p(y)) )
- mIS (Gurumurthy et al. 2017, eq. 4): mIS = exp( E_{x,x'} KL(p(y|x) || p(y|x')) ), x, x' independent samples
- AM (Zhou et al. 2018, eq. 6):        AM  = KL(p_ref(y) || p(y)) + E_x H(p(y|x)),
                                        p_ref(y) = the mean prediction on real data (lower is better)
- FID (Heusel et al. 2017):            FID = |mu_g - mu_r|^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2))
                                        on the classifier's features of generated and real clips

IS of perfect, balanced predictions (one-hot, every class equally often) is the number of classes;
of constant predictions it is 1.
"""

from __future__ import annotations

import torch

EPS = 1e-12


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last dimension, with 0 log 0 = 0."""
    p, q = p.double(), q.double()
    return torch.where(p > 0, p * (torch.log(p.clamp_min(EPS)) - torch.log(q.clamp_min(EPS))), 0.0).sum(-1)


def inception_score(probs: torch.Tensor) -> float:
    """probs (n, classes), rows summing to 1."""
    marginal = probs.double().mean(0, keepdim=True)
    return float(torch.exp(_kl(probs, marginal).mean()))


def modified_inception_score(probs: torch.Tensor) -> float:
    """exp of the mean KL between the predictions of every ordered pair of samples (i != j, as
    independent draws). Exact, O(n^2 · classes)."""
    p = probs.double()
    n = p.shape[0]
    if n < 2:
        raise ValueError("mIS needs at least two samples")
    log_p = torch.log(p.clamp_min(EPS))
    plogp = torch.where(p > 0, p * log_p, 0.0).sum(-1)  # (n,): -H(p_i)
    cross = p @ log_p.T  # (n, n): sum_y p_i(y) log p_j(y)
    kl = plogp[:, None] - cross  # KL(p_i || p_j)
    return float(torch.exp((kl.sum() - kl.diagonal().sum()) / (n * (n - 1))))


def am_score(probs: torch.Tensor, reference_probs: torch.Tensor) -> float:
    """``reference_probs``: the classifier's predictions on real data (n_ref, classes)."""
    p = probs.double()
    ref = reference_probs.double().mean(0)
    entropy = -torch.where(p > 0, p * torch.log(p.clamp_min(EPS)), 0.0).sum(-1)
    return float(_kl(ref, p.mean(0)) + entropy.mean())


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(features: torch.Tensor, reference: torch.Tensor) -> float:
    """FID between two sets of feature vectors (n, d) and (m, d) (each n, m >= 2). The trace of the
    matrix square root uses Tr((S_g S_r)^(1/2)) = Tr((S_r^(1/2) S_g S_r^(1/2))^(1/2)), a symmetric
    PSD matrix, so it needs only eigendecompositions (float64)."""
    if features.shape[0] < 2 or reference.shape[0] < 2:
        raise ValueError("FID needs at least two feature vectors in each set")
    f, r = features.double(), reference.double()
    mu_f, mu_r = f.mean(0), r.mean(0)
    s_f, s_r = torch.cov(f.T).reshape(f.shape[1], -1), torch.cov(r.T).reshape(r.shape[1], -1)
    root_r = _psd_sqrt(s_r)
    cross = torch.linalg.eigvalsh(root_r @ s_f @ root_r).clamp_min(0).sqrt().sum()
    return float((mu_f - mu_r).square().sum() + torch.trace(s_f) + torch.trace(s_r) - 2 * cross)
