"""lth_core: lottery-ticket search (train, prune with LAMP, rewind) and the metrics of
*Not All Lotteries Are Made Equal* (Sahu, Mitheran, Mahapatra).

The names below are imported on first use, so that ``lth`` (``lth_core.cli``) starts
without torch and handles even a Ctrl-C during its imports in one line.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ARCHITECTURES": "lth_core.models",
    "PRUNERS": "lth_core.pruning",
    "SearchConfig": "lth_core.config",
    "TrainConfig": "lth_core.config",
    "build": "lth_core.models",
    "default_train_config": "lth_core.config",
    "lamp_masks": "lth_core.pruning",
    "lamp_scores": "lth_core.pruning",
    "load_results": "lth_core.store",
    "load_ticket": "lth_core.ticket",
    "magnitude_masks": "lth_core.pruning",
    "random_masks": "lth_core.pruning",
    "run_search": "lth_core.engine.search",
    "ticket_search": "lth_core.engine.search",
}

__all__ = sorted(_EXPORTS)

def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lth_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
