"""Bad input never gives a wrong answer (issue 20): each case is refused in one line before
anything is written, or reported and recomputed; nothing stored is lost or rewritten."""

from __future__ import annotations

import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lth_core.config import ConfigError, SearchConfig, TrainConfig, search_config_from_dict
from lth_core.data import CIFAR10_CLASSES, DataSpecError, load_data

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


# ------------------------------------------------------------ case 1: data read to its end

def _image_tree(root: Path, classes: list[str], per_class: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(img).save(root / split / c / f"{i}.png")
    return root


def _tar(path: Path, tree: Path, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        tf.add(tree, arcname=tree.name)
    return path


@pytest.fixture
def archive(tmp_path) -> Path:
    return _tar(tmp_path / "mini.tar.gz", _image_tree(tmp_path / "mini", ["a", "b", "c"], 4))


@pytest.mark.parametrize("offset", [-8, -4, -300])
def test_a_damaged_archive_is_refused_naming_it(archive, tmp_path, offset):
    """Bytes flipped near the end (the gzip checksum and length, or the last member) used to
    load without a word; now the archive is read to its end."""
    raw = bytearray(archive.read_bytes())
    raw[offset] ^= 0xFF
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataSpecError) as info:
        load_data(str(bad), cache_dir=tmp_path / "cache")
    assert str(bad) in str(info.value) and "damaged" in str(info.value)
    assert len(str(info.value).splitlines()) == 1
    assert len(load_data(str(archive), cache_dir=tmp_path / "cache").test) == 12  # intact


def test_a_damaged_member_header_does_not_end_the_archive_early(tmp_path):
    """tarfile stops listing at a header it cannot parse: the rest must still be read."""
    tar = _tar(tmp_path / "mini.tar", _image_tree(tmp_path / "mini", ["a", "b"], 3), "w")
    raw = bytearray(tar.read_bytes())
    with tarfile.open(tar) as tf:
        offset = tf.getmembers()[-1].offset  # the last member: all classes keep images
    raw[offset:offset + 100] = b"\x7f" * 100
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataSpecError, match="damaged"):
        load_data(str(bad), cache_dir=tmp_path / "cache")


def test_cifar10_with_missing_images_is_refused(tmp_path):
    tree = _image_tree(tmp_path / "cifar10-copy", CIFAR10_CLASSES, 1)
    with pytest.raises(DataSpecError, match="CIFAR-10 train set with 10 images"):
        load_data(str(tree), cache_dir=tmp_path / "cache", val_size=1)
    subset = tree.rename(tmp_path / "my-subset")  # a subset under its own name is left alone
    assert len(load_data(str(subset), cache_dir=tmp_path / "cache", val_size=1).test) == 10
