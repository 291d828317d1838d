"""Generators of the long-context synthetic tasks (one example per call, from a seeded generator).

Every example is ``{"inputs", "targets", "mask"}`` of one length: the model reads ``inputs`` causally
and is scored (and trained) only where ``mask`` is true, on ``targets`` there. No answer appears in
``inputs`` at or after the position where it is asked for, so the answer is determined by the
context before it and nothing else.

* Selective copying (Mamba paper, Gu & Dao 2023, section 4.1.1 and Figure 2): ``num_tokens`` data
  tokens at random positions of a region of ``seq_len`` noise tokens, then ``num_tokens`` copy
  markers; at the j-th marker the answer is the j-th data token (in order of position).
  Vocabulary: data 0..V-1, NOISE = V, COPY = V+1.
* Induction heads (section 4.1.2, Table 2; Olsson et al. 2022): ``seq_len`` random data tokens with
  a trigger token at one random position p followed by the answer token, and the trigger again at
  the last position; the answer at the last position is the token after the first trigger. The
  trigger occurs exactly twice. Vocabulary: data 0..V-1, TRIGGER = V.
* Multi-query associative recall (MQAR; Arora et al. 2023, "Zoology", section 3; Mamba-2 paper,
  Dao & Gu 2024, section 9.1): ``num_kv_pairs`` key-value pairs (distinct keys from the first half
  of the vocabulary, values from the second half), then a query region of noise tokens with every
  key queried once, at random distinct positions in random order; at a query the answer is its
  value (the next token, as in Zoology's labels). Vocabulary: keys 0..V/2-1, values V/2..V-1, NOISE = V.
* Modular sum, a state-tracking task (Grazzi et al. 2024, "Unlocking State-Tracking in Linear RNNs
  Through Negative Eigenvalues"; Merrill et al. 2024): ``seq_len`` random tokens 0..V-1 and, at every
  position t, the answer (x_1 + ... + x_t) mod V. V = 2 is running parity. A diagonal SSM with real,
  positive transitions exp(ΔA) cannot count modulo V at every length; a rotation (complex A with
  phase 2π/V) can.
"""

from __future__ import annotations

import numpy as np
import torch

KINDS = ("selective_copying", "induction_heads", "mqar", "modular_sum")


def vocab_size(kind: str, vocab: int) -> int:
    """Size of the model's vocabulary: the task's ``vocab`` data tokens plus its special tokens."""
    return vocab + (2 if kind == "selective_copying" else 1)


def _example(inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> dict:
    return {
        "inputs": torch.from_numpy(inputs.astype(np.int64)),
        "targets": torch.from_numpy(targets.astype(np.int64)),
        "mask": torch.from_numpy(mask),
    }


def selective_copying(rng: np.random.Generator, seq_len: int, vocab: int, num_tokens: int) -> dict:
    """Inputs of length seq_len + num_tokens: a noise region holding num_tokens data tokens, then copy markers."""
    noise, copy = vocab, vocab + 1
    region = np.full(seq_len, noise, dtype=np.int64)
    positions = np.sort(rng.choice(seq_len, size=num_tokens, replace=False))
    data = rng.integers(0, vocab, size=num_tokens)
    region[positions] = data
    inputs = np.concatenate([region, np.full(num_tokens, copy)])
    targets = np.concatenate([np.zeros(seq_len, dtype=np.int64), data])
    mask = np.zeros(seq_len + num_tokens, dtype=bool)
    mask[seq_len:] = True
    return _example(inputs, targets, mask)


def induction_heads(rng: np.random.Generator, seq_len: int, vocab: int) -> dict:
    """Inputs of length seq_len: data tokens, TRIGGER answer at a random place, TRIGGER last."""
    trigger = vocab
    inputs = rng.integers(0, vocab, size=seq_len)
    p = int(rng.integers(0, seq_len - 2))  # trigger at p, answer at p + 1 <= seq_len - 2
    inputs[p], inputs[-1] = trigger, trigger
    targets = np.zeros(seq_len, dtype=np.int64)
    targets[-1] = inputs[p + 1]
    mask = np.zeros(seq_len, dtype=bool)
    mask[-1] = True
    return _example(inputs, targets, mask)


def mqar(rng: np.random.Generator, seq_len: int, vocab: int, num_kv_pairs: int) -> dict:
    """Inputs of length seq_len: k1 v1 .. kN vN, then N queries among noise tokens."""
    n, half, noise = num_kv_pairs, vocab // 2, vocab
    keys = rng.choice(half, size=n, replace=False)
    values = rng.integers(half, vocab, size=n)
    context = np.stack([keys, values], axis=1).reshape(-1)
    query_len = seq_len - 2 * n
    slots = np.sort(rng.choice(query_len, size=n, replace=False))
    order = rng.permutation(n)
    queries = np.full(query_len, noise, dtype=np.int64)
    queries[slots] = keys[order]
    targets = np.zeros(seq_len, dtype=np.int64)
    targets[2 * n + slots] = values[order]
    mask = np.zeros(seq_len, dtype=bool)
    mask[2 * n + slots] = True
    return _example(np.concatenate([context, queries]), targets, mask)


def modular_sum(rng: np.random.Generator, seq_len: int, vocab: int) -> dict:
    """Running sum modulo ``vocab`` of random tokens, answered at every position."""
    x = rng.integers(0, vocab, seq_len)
    return _example(x, np.cumsum(x) % vocab, np.ones(seq_len, dtype=bool))


def check_sizes(kind: str, seq_len: int, vocab: int, num_tokens: int, num_kv_pairs: int, where: str) -> str | None:
    """The reason these sizes cannot make an example of ``kind``, or None."""
    if kind not in KINDS:
        return f"{where}.kind={kind!r}: expected one of {', '.join(KINDS)}"
    if vocab < 2:
        return f"{where}.vocab={vocab}: expected >= 2"
    if kind == "selective_copying" and not 1 <= num_tokens <= seq_len:
        return f"{where}.num_tokens={num_tokens}: expected 1 .. seq_len ({seq_len})"
    if kind == "induction_heads" and seq_len < 3:
        return f"{where}.seq_len={seq_len}: induction heads needs >= 3"
    if kind == "mqar":
        if num_kv_pairs < 1 or num_kv_pairs > vocab // 2:
            return f"{where}.num_kv_pairs={num_kv_pairs}: expected 1 .. vocab/2 ({vocab // 2}) distinct keys"
        if 3 * num_kv_pairs > seq_len:
            return f"{where}.seq_len={seq_len}: MQAR with {num_kv_pairs} pairs needs >= 3 * num_kv_pairs tokens"
    return None


def make_example(kind: str, rng: np.random.Generator, seq_len: int, vocab: int, num_tokens: int, num_kv_pairs: int):
    if kind == "selective_copying":
        return selective_copying(rng, seq_len, vocab, num_tokens)
    if kind == "induction_heads":
        return induction_heads(rng, seq_len, vocab)
    if kind == "modular_sum":
        return modular_sum(rng, seq_len, vocab)
    return mqar(rng, seq_len, vocab, num_kv_pairs)
