"""lth_core: lottery-ticket search (train, prune with LAMP, rewind) and the metrics of
*Not All Lotteries Are Made Equal* (Sahu, Mitheran, Mahapatra)."""

from .config import SearchConfig, TrainConfig, default_train_config
from .lamp import PRUNERS, lamp_masks, lamp_scores, magnitude_masks, random_masks
from .models import ARCHITECTURES, build
from .search import ticket_search
from .store import load_results

__all__ = [
    "ARCHITECTURES",
    "PRUNERS",
    "SearchConfig",
    "TrainConfig",
    "build",
    "default_train_config",
    "lamp_masks",
    "lamp_scores",
    "load_results",
    "magnitude_masks",
    "random_masks",
    "ticket_search",
]
