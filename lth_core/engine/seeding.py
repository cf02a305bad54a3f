"""Stable seeds derived from names, so run r of an architecture is reproducible anywhere,
and models built under them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import nn


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (Python's ``hash`` is salted per process; sha256 is not)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def init_model(model_fn: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build the model with a seeded global RNG, leaving the caller's RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_fn()
