"""Bad input never gives a wrong answer (issue 20): each case is refused in one line before
anything is written, or reported and recomputed; nothing stored is lost or rewritten."""

from __future__ import annotations

import math

import pytest

from lth_core.config import ConfigError, SearchConfig, TrainConfig, search_config_from_dict

# ---------------------------------------------------------------- configs: every field checked

BAD_TRAIN = {
    "lr nan": dict(lr=math.nan), "lr inf": dict(lr=math.inf), "lr 0": dict(lr=0.0),
    "lr text": dict(lr="0.1"), "momentum -1": dict(momentum=-1.0),
    "momentum 1": dict(momentum=1.0), "weight decay -1": dict(weight_decay=-1.0),
    "weight decay nan": dict(weight_decay=math.nan), "eval batch 0": dict(eval_batch_size=0),
    "label smoothing 2": dict(label_smoothing=2.0), "warmup -1": dict(warmup_epochs=-1),
    "warmup > epochs": dict(max_epochs=2, warmup_epochs=3), "batch 1.5": dict(batch_size=1.5),
    "batch True": dict(batch_size=True), "patience 0": dict(patience=0),
    "max epochs 0": dict(max_epochs=0), "amp text": dict(amp="yes"),
}
BAD_SEARCH = {
    "stages 0": dict(stages=0), "stages 2.5": dict(stages=2.5),
    "prune rate 1": dict(prune_rate=1.0), "prune rate nan": dict(prune_rate=math.nan),
    "pruner": dict(pruner="lamb"), "arc pairs 0": dict(arc_pairs=0),
    "arc points 1": dict(arc_points=1), "hidden runs -1": dict(hidden_runs=-1),
    "seed 1.5": dict(seed=1.5), "train dict": dict(train={"lr": 0.1}),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN))
def test_bad_train_field_is_refused_when_built(case):
    kw = BAD_TRAIN[case]
    with pytest.raises(ConfigError) as info:
        TrainConfig(**kw)
    assert len(str(info.value).splitlines()) == 1
    assert list(kw)[-1] in str(info.value)


@pytest.mark.parametrize("case", sorted(BAD_SEARCH))
def test_bad_search_field_is_refused_when_built(case):
    with pytest.raises(ConfigError):
        SearchConfig(**BAD_SEARCH[case])


def test_a_field_changed_in_place_is_refused_by_validate():
    cfg = SearchConfig()
    cfg.train.lr = math.nan
    with pytest.raises(ConfigError, match="lr must be finite"):
        cfg.validate()


def test_config_from_a_bad_dict_is_one_line():
    with pytest.raises(ConfigError, match="not a search config"):
        search_config_from_dict({"stages": 2, "wrong": 1})
    with pytest.raises(ConfigError, match="momentum"):
        search_config_from_dict({"train": {"momentum": -1}})
    assert search_config_from_dict({"seed": -3}).seed == -3  # any integer seeds a search
