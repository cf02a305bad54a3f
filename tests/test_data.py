"""Tests for lth_core.data: sources, checksums, caching, validation split, augment, batches."""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from lth_book.profiles import SHARED_DATA
from lth_core import data
from lth_core.data import DataSpecError, Split, augment, batches, load_data, normalize

REAL_DATA = SHARED_DATA
CLASSES = ["ant", "cat", "dog"]  # sorted: the label order every source must produce


def make_arrays(n_train: int = 6, n_test: int = 2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random HWC images ordered by class; pixel (0,0,R) = 50*label, (0,1,R) = image id."""
    rng = np.random.default_rng(0)
    out, next_id = {}, 0
    for split, per_class in (("train", n_train), ("test", n_test)):
        labels = np.repeat(np.arange(len(CLASSES)), per_class)
        images = rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
        images[:, 0, 0, 0] = 50 * labels
        images[:, 0, 1, 0] = np.arange(next_id, next_id + len(labels))
        next_id += len(labels)
        out[split] = (images, labels)
    return out


def write_tree(root: Path, arrays) -> Path:
    """PNG image-folder tree; classes created in unsorted order, names sort like the arrays."""
    for split, (images, labels) in arrays.items():
        for name in reversed(CLASSES):
            (root / split / name).mkdir(parents=True)
        for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
            Image.fromarray(img).save(root / split / CLASSES[lab] / f"{i:04d}.png")
    return root


def write_tar(path: Path, tree: Path, arcname: str) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        tf.add(tree, arcname=arcname)
    return path


def write_cifar(root: Path, arrays) -> Path:
    """A miniature torchvision CIFAR-10 root with the same pixels, in the same order."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)

    def dump(name: str, obj) -> None:
        with open(d / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    def batch(images: np.ndarray, labels: np.ndarray) -> dict:
        return {"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
                "labels": [int(x) for x in labels]}

    images, labels = arrays["train"]
    for i, idx in enumerate(np.array_split(np.arange(len(labels)), 5), start=1):
        dump(f"data_batch_{i}", batch(images[idx], labels[idx]))
    dump("test_batch", batch(*arrays["test"]))
    dump("batches.meta", {"label_names": CLASSES})
    return root


@pytest.fixture
def arrays():
    return make_arrays()


@pytest.fixture
def tree(tmp_path, arrays) -> Path:
    return write_tree(tmp_path / "mini", arrays)


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def as_chw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def full_train(ds: data.Dataset) -> Split:
    """Train + val back together, in source order (image id sits in pixel (0,1,R))."""
    images = torch.cat([ds.train.images, ds.val.images])
    labels = torch.cat([ds.train.labels, ds.val.labels])
    order = images[:, 0, 0, 1].argsort()
    return Split(images[order], labels[order])


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_shaped():
    torch.manual_seed(1)
    a = load_data("synthetic")
    torch.manual_seed(2)  # the global RNG must not matter
    b = load_data("synthetic")
    assert a.identity() == b.identity()
    assert a.identity()["n_train"] == 1000 and len(a.val) == 200 and len(a.test) == 400
    assert a.name == "synthetic" and len(a.classes) == 10 and len(a.checksum) == 64
    for s, t in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert s.images.dtype == torch.uint8 and s.images.shape[1:] == (3, 32, 32)
        assert s.labels.dtype == torch.int64 and s.images.is_contiguous()
        assert torch.equal(s.images, t.images) and torch.equal(s.labels, t.labels)
    assert set(a.train.labels.tolist()) == set(range(10))
    assert all(0.1 < m < 0.9 for m in a.mean) and all(0.05 < s < 0.5 for s in a.std)
    small = load_data("synthetic:60:20")
    assert (len(small.train), len(small.val), len(small.test)) == (50, 10, 20)
    assert small.checksum != a.checksum


def test_synthetic_is_learnable():
    ds = load_data("synthetic")
    # nearest class mean on raw pixels: well above the 10 % of chance, far from perfect
    x_train, x_test = ds.train.images.flatten(1).float(), ds.test.images.flatten(1).float()
    means = torch.stack([x_train[ds.train.labels == c].mean(0) for c in range(10)])
    ncm = (torch.cdist(x_test, means).argmin(1) == ds.test.labels).float().mean().item()
    assert 0.4 < ncm < 0.95
    # and a LeNet-5 learns it in a few epochs (one thread: fast even on a busy machine)
    threads = torch.get_num_threads()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.set_num_threads(1)
        try:
            net = train_lenet(ds)
        finally:
            torch.set_num_threads(threads)
    with torch.no_grad():
        x, y = next(batches(ds.test, len(ds.test), mean=ds.mean, std=ds.std, device="cpu",
                            shuffle=False, augment=False, generator=None))
        assert (net(x).argmax(1) == y).float().mean().item() > 0.4


def train_lenet(ds: data.Dataset, epochs: int = 3) -> nn.Module:
    """A LeNet-5 trained with plain SGD (no augmentation)."""
    net = nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
        nn.ReLU(), nn.Linear(84, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for x, y in batches(ds.train, 64, mean=ds.mean, std=ds.std, device="cpu",
                            shuffle=True, augment=False, generator=g):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    return net


# ------------------------------------------------------------------ image folders, tars


def test_folder_and_tar_agree_and_labels_follow_sorted_classes(tmp_path, tree, arrays, cache):
    folder = load_data(str(tree), cache_dir=cache, val_size=3)
    archive = load_data(str(write_tar(tmp_path / "mini-tgz.tar.gz", tree, "wrapped")),
                        cache_dir=cache, val_size=3)
    assert folder.name == "mini" and archive.name == "mini-tgz"
    assert folder.classes == archive.classes == CLASSES
    assert folder.checksum == archive.checksum
    for a, b in ((folder.train, archive.train), (folder.val, archive.val),
                 (folder.test, archive.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    images, labels = arrays["test"]
    assert torch.equal(folder.test.images, as_chw(images))
    assert folder.test.labels.tolist() == labels.tolist()
    train = full_train(folder)
    assert torch.equal(train.images, as_chw(arrays["train"][0]))
    assert torch.equal(train.images[:, 0, 0, 0].long(), 50 * train.labels)
    assert folder.identity() == {"name": "mini", "checksum": folder.checksum,
                                 "n_train": 15, "n_val": 3, "n_test": 6}


def test_wrapper_folder_and_tgz_without_wrapper(tmp_path, arrays, cache):
    tree = write_tree(tmp_path / "outer" / "inner", arrays)
    wrapped = load_data(str(tmp_path / "outer"), cache_dir=cache, val_size=3)
    bare = load_data(str(write_tar(tmp_path / "bare.tgz", tree, ".")), cache_dir=cache,
                     val_size=3)
    assert wrapped.checksum == bare.checksum and bare.name == "bare"


def test_checksum_is_the_same_across_formats(tmp_path, tree, arrays, cache):
    root = write_cifar(tmp_path / "tv", arrays)
    from_root = load_data(str(root), val_size=3)
    from_batches = load_data(str(root / "cifar-10-batches-py"), val_size=3)
    from_pngs = load_data(str(tree), cache_dir=cache, val_size=3)
    assert from_root.name == "cifar10" and from_root.classes == CLASSES
    assert from_root.checksum == from_batches.checksum == from_pngs.checksum
    assert torch.equal(from_root.val.images, from_pngs.val.images)


def test_grayscale_images_become_rgb(tmp_path, cache):
    for split in ("train", "test"):
        for name in ("a", "b"):
            (tmp_path / "g" / split / name).mkdir(parents=True)
            for i in range(3):
                Image.new("L", (32, 32), 10 * i).save(tmp_path / "g" / split / name / f"{i}.png")
    ds = load_data(str(tmp_path / "g"), cache_dir=cache, val_size=1)
    assert ds.test.images.shape == (6, 3, 32, 32)
    assert torch.equal(ds.test.images[:, 0], ds.test.images[:, 2])


# ---------------------------------------------------------------------------- val split


def test_val_split_is_disjoint_stratified_and_fixed():
    everything = load_data("synthetic", val_size=0).train
    a, b = load_data("synthetic"), load_data("synthetic")
    other = load_data("synthetic", split_seed=1)

    def rows(s: Split) -> set[bytes]:
        return {img.numpy().tobytes() for img in s.images}

    assert len(everything) == 1200 and len(rows(everything)) == 1200
    assert not rows(a.train) & rows(a.val)
    assert rows(a.train) | rows(a.val) == rows(everything)
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.val.labels, b.val.labels)
    assert rows(other.val) != rows(a.val) and other.checksum == a.checksum
    assert torch.bincount(a.val.labels, minlength=10).tolist() == [20] * 10
    index = {img.numpy().tobytes(): i for i, img in enumerate(everything.images)}
    positions = [index[img.numpy().tobytes()] for img in a.train.images]
    assert positions == sorted(positions)  # train keeps the source order


def test_mean_std_come_from_the_train_split():
    ds = load_data("synthetic")
    x = ds.train.images.double() / 255
    assert np.allclose(ds.mean, x.mean(dim=(0, 2, 3)).tolist(), atol=1e-9)
    assert np.allclose(ds.std, x.std(dim=(0, 2, 3), unbiased=False).tolist(), atol=1e-9)


# ------------------------------------------------------------------------------- cache


def test_cache_hit_and_corrupt_cache_rebuilt(tmp_path, tree, cache, monkeypatch):
    archive = write_tar(tmp_path / "mini.tar.gz", tree, "mini")
    first = load_data(str(archive), cache_dir=cache, val_size=3)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"

    def no_decoding(*args, **kwargs):
        raise AssertionError("should have come from the cache")

    with monkeypatch.context() as m:
        m.setattr(data, "_read_tar", no_decoding)
        hit = load_data(str(archive), cache_dir=cache, val_size=3)
    assert hit.checksum == first.checksum
    assert torch.equal(hit.train.images, first.train.images)
    assert torch.equal(hit.test.labels, first.test.labels)

    files[0].write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="corrupt"):
        rebuilt = load_data(str(archive), cache_dir=cache, val_size=3)
    assert rebuilt.checksum == first.checksum
    assert torch.equal(rebuilt.train.images, first.train.images)
    assert [f.name for f in cache.iterdir()] == [files[0].name]  # no temp files left
    torch.load(files[0], weights_only=True)  # a valid file again


def test_cache_dir_defaults_to_lth_cache_env(tmp_path, tree, monkeypatch):
    monkeypatch.setenv("LTH_CACHE", str(tmp_path / "envcache"))
    load_data(str(tree), val_size=3)
    assert len(list((tmp_path / "envcache").glob("*.pt"))) == 1


# ---------------------------------------------------------------------------- augment


def positional_batch(b: int) -> torch.Tensor:
    """Channel 0 holds row+1, channel 1 col+1, channel 2 the image index: all non-zero."""
    rows = torch.arange(1, 33, dtype=torch.uint8).view(1, 32, 1).expand(b, 32, 32)
    cols = torch.arange(1, 33, dtype=torch.uint8).view(1, 1, 32).expand(b, 32, 32)
    ids = (torch.arange(b) % 255 + 1).to(torch.uint8).view(b, 1, 1).expand(b, 32, 32)
    return torch.stack([rows, cols, ids], dim=1).contiguous()


def test_augment_shape_and_determinism():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    a = augment(x, torch.Generator().manual_seed(3))
    b = augment(x, torch.Generator().manual_seed(3))
    c = augment(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_is_a_shifted_flipped_window_of_the_padded_image():
    x = positional_batch(256)
    out = augment(x, torch.Generator().manual_seed(0))
    padded = F.pad(x, (4, 4, 4, 4))
    seen = set()
    for i in range(len(x)):  # the test may loop; the implementation does not
        matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (0, 1)
                   if torch.equal(out[i], (lambda w: w.flip(-1) if flip else w)(
                       padded[i, :, dy:dy + 32, dx:dx + 32]))]
        assert matches, f"image {i} is not a window of its padded input"
        seen.update(matches)
    assert {f for *_, f in seen} == {0, 1}
    assert len({(dy, dx) for dy, dx, _ in seen}) > 60  # offsets span the 9x9 range


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augment_and_batches_are_device_independent():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    on_cpu = augment(x, torch.Generator().manual_seed(5))
    on_gpu = augment(x.cuda(), torch.Generator().manual_seed(5))
    assert on_gpu.is_cuda and torch.equal(on_cpu, on_gpu.cpu())
    split = Split(x, torch.arange(64))
    kw = dict(mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True, augment=True)
    for device, s in (("cuda", split), ("cuda", split.to("cuda"))):
        cpu = list(batches(split, 10, device="cpu", generator=torch.Generator().manual_seed(6),
                           **kw))
        dev = list(batches(s, 10, device=device, generator=torch.Generator().manual_seed(6),
                           **kw))
        for (xc, yc), (xd, yd) in zip(cpu, dev, strict=True):
            assert xd.is_cuda and torch.equal(yc, yd.cpu())
            assert torch.allclose(xc, xd.cpu())


# ---------------------------------------------------------------------------- batches


def test_normalize():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 3, 1, 3)
    y = normalize(x, (0.2, 0.2, 0.2), (0.5, 0.5, 0.5))
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.allclose(y[0, 0, 0], torch.tensor([-0.4, 0.0, 1.6]))


def test_batches_cover_every_index_once():
    n = 103
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    split = Split(images, torch.arange(n))
    kw = dict(mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2), device="cpu", augment=False)
    seen = []
    for x, y in batches(split, 10, shuffle=True, generator=torch.Generator().manual_seed(0),
                        **kw):
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and len(x) <= 10
        assert torch.allclose(x, normalize(images[y], kw["mean"], kw["std"]))
        seen.append(y)
    seen = torch.cat(seen)
    assert sorted(seen.tolist()) == list(range(n)) and seen.tolist() != list(range(n))

    again = torch.cat([y for _, y in batches(split, 10, shuffle=True,
                                             generator=torch.Generator().manual_seed(0), **kw)])
    assert torch.equal(seen, again)
    ordered = [y for _, y in batches(split, 10, shuffle=False, generator=None, **kw)]
    assert torch.cat(ordered).tolist() == list(range(n))
    dropped = [y for _, y in batches(split, 10, shuffle=False, generator=None, drop_last=True,
                                     **kw)]
    assert len(dropped) == 10 and all(len(y) == 10 for y in dropped)
    with pytest.raises(ValueError):
        batches(split, 10, shuffle=True, generator=None, **kw)  # checked at the call


def test_batches_with_augment_are_reproducible():
    split = Split(positional_batch(40), torch.arange(40))
    kw = dict(mean=(0.5,) * 3, std=(0.5,) * 3, device="cpu", shuffle=True, augment=True)
    a = list(batches(split, 16, generator=torch.Generator().manual_seed(1), **kw))
    b = list(batches(split, 16, generator=torch.Generator().manual_seed(1), **kw))
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb)
               for (xa, ya), (xb, yb) in zip(a, b, strict=True))
    x0 = normalize(split.images, kw["mean"], kw["std"])
    assert not torch.allclose(torch.cat([x for x, _ in a]), x0[torch.cat([y for _, y in a])])


# -------------------------------------------------------------------------- bad specs


def bad_specs(tmp_path: Path, arrays) -> dict[str, tuple[str, str]]:
    """name -> (spec, a word the message must contain)."""
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    write_tree(tmp_path / "notrain" / "valid", {"test": arrays["test"]})
    bad_size = write_tree(tmp_path / "badsize", arrays)
    Image.new("RGB", (16, 16)).save(bad_size / "train" / "ant" / "0000.png")
    broken = write_tree(tmp_path / "broken", arrays)
    (broken / "test" / "cat" / "0003.png").write_bytes(b"not a png")
    extra = write_tree(tmp_path / "extra", arrays)
    (extra / "test" / "zebra").mkdir()
    Image.new("RGB", (32, 32)).save(extra / "test" / "zebra" / "x.png")
    tar_without_tree = tmp_path / "flat.tar.gz"
    with tarfile.open(tar_without_tree, "w:gz") as tf:
        tf.add(tmp_path / "notes.txt", arcname="notes.txt")
    return {
        "missing path": (str(tmp_path / "nope"), "expected"),
        "unknown word": ("imagenet", "expected"),
        "bad synthetic": ("synthetic:abc", "synthetic:NTRAIN:NTEST"),
        "short synthetic": ("synthetic:10", "synthetic:NTRAIN:NTEST"),
        "zero synthetic": ("synthetic:0:5", "synthetic:NTRAIN:NTEST"),
        "not a tarball": (str(tmp_path / "notes.txt"), "tar"),
        "folder without tree": (str(tmp_path / "empty"), "train/"),
        "tree without train": (str(tmp_path / "notrain"), "train/"),
        "tar without tree": (str(tar_without_tree), "train/"),
        "wrong size": (str(bad_size), "0000.png"),
        "undecodable": (str(broken), "0003.png"),
        "test class not in train": (str(extra), "zebra"),
        "incomplete cifar root": (str(tmp_path / "cifar-10-batches-py"), "data_batch_2"),
    }


def test_bad_specs_raise_one_line_errors(tmp_path, arrays, cache):
    specs = bad_specs(tmp_path, arrays)
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
    for what, (spec, word) in specs.items():
        with pytest.raises(DataSpecError) as err:
            load_data(spec, cache_dir=cache, val_size=1)
        msg = str(err.value)
        assert "\n" not in msg and word in msg, f"{what}: {msg}"
    with pytest.raises(DataSpecError, match="val_size"):
        load_data("synthetic", val_size=1200)
    assert issubclass(DataSpecError, ValueError)


def test_cifar10_download_failure_is_a_one_line_error(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3]\nTemporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataSpecError) as err:
        load_data("cifar10", cache_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "could not download CIFAR-10 to" in msg
    assert "pass a local path instead" in msg


# --------------------------------------------------------------------------- real data


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LTH_REAL_DATA") != "1" or not REAL_DATA.is_file(),
                    reason="set LTH_REAL_DATA=1 (and have ../shared/data) to decode real CIFAR-10")
def test_real_cifar10_jpeg():
    ds = load_data(str(REAL_DATA))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (45_000, 5_000, 10_000)
    assert ds.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                          "horse", "ship", "truck"]
    assert ds.name == "cifar10-jpeg"
    assert torch.bincount(ds.val.labels).tolist() == [500] * 10
    assert np.allclose(ds.mean, (0.4913, 0.4821, 0.4465), atol=2e-3)
    assert np.allclose(ds.std, (0.2452, 0.2428, 0.2606), atol=2e-3)
