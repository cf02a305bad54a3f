"""lth_core: lottery-ticket search (train, prune with LAMP, rewind) and the metrics of
*Not All Lotteries Are Made Equal* (Sahu, Mitheran, Mahapatra)."""

from lth_core.config import SearchConfig, TrainConfig, default_train_config
from lth_core.engine.search import ticket_search
from lth_core.models import ARCHITECTURES, build
from lth_core.pruning import PRUNERS, lamp_masks, lamp_scores, magnitude_masks, random_masks
from lth_core.store import load_results

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
