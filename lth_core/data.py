"""Data layer: CIFAR-shaped datasets held as uint8 tensors, augmented and batched in bulk.

Like airbench, the whole dataset lives in one tensor (on the CPU or the accelerator), and
batches are cut, cropped, flipped and normalised with tensor ops: no per-image Python on
the hot path. All randomness comes from an explicit CPU ``torch.Generator``, so a seed gives
the same batches on any device.

Sources (``load_data(spec)``): ``synthetic[:NTRAIN:NTEST]``, ``cifar10`` (torchvision
download), a torchvision CIFAR-10 root, an image-folder tree (``train/<class>/*``,
``test/<class>/*``) or a ``.tar.gz`` of one. Decoded trees and archives are cached as ``.pt``
files under ``cache_dir`` (default ``$LTH_CACHE`` or ``~/.cache/lth_core``).
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import pickle
import tarfile
import warnings
import zlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from lth_core.store import atomic_torch_save

PAD = 4  # pixels of zero padding for the random crop

IMAGE_SIZE = 32
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
CIFAR10_PER_CLASS = (5000, 1000)  # train and test images per class
DEFAULT_VAL_SIZE = 5000
SYNTHETIC_SEED = 20190101
CACHE_VERSION = 1
SPEC_HELP = (
    "expected 'synthetic', 'synthetic:NTRAIN:NTEST', 'cifar10', a CIFAR-10 root "
    "(with cifar-10-batches-py/), an image-folder tree (train/<class>/*, test/<class>/*) "
    "or a .tar.gz of one"
)


class DataSpecError(ValueError):
    """A data spec or path that cannot be loaded; the message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))


@dataclass
class Split:
    """One split of a dataset: uint8 images (N, 3, 32, 32) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 ({self.images.shape[0]},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")
        self.images = self.images.contiguous()
        self.labels = self.labels.contiguous()

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to(self, device: torch.device | str) -> Split:
        """Both tensors on ``device`` (no copy when already there)."""
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class Dataset:
    """Train/val/test splits plus what identifies the data and normalises it."""

    name: str
    checksum: str  # sha256 of decoded train+test content, independent of the source format
    classes: list[str]
    train: Split  # training images with the validation split removed
    val: Split
    test: Split
    mean: tuple[float, float, float]  # per-channel statistics of `train`, in [0, 1] units
    std: tuple[float, float, float]

    def identity(self) -> dict:
        """What to record with results so a run can be matched to its data."""
        return {
            "name": self.name,
            "checksum": self.checksum,
            "n_train": len(self.train),
            "n_val": len(self.val),
            "n_test": len(self.test),
        }


# ----------------------------------------------------------------------------- loading


def load_data(
    spec: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    val_size: int | None = None,
    split_seed: int = 0,
) -> Dataset:
    """Load a dataset from ``spec`` and hold out a fixed, seeded, stratified validation set.

    ``val_size`` defaults to 5,000 (at most a tenth of the train set) for real data and a
    sixth of the train set for ``synthetic``.
    """
    cache = Path(cache_dir or os.environ.get("LTH_CACHE") or "~/.cache/lth_core").expanduser()
    spec = str(spec)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        name = "synthetic"
        train, test, classes = _synthetic(*_parse_synthetic(spec))
        default_val = len(train) // 6
    else:
        name, train, test, classes = _load_source(spec, cache)
        _check_known_counts(name, train, test, classes, spec)
        default_val = min(DEFAULT_VAL_SIZE, len(train) // 10)
    checksum = _checksum(train, test)
    if val_size is None and default_val < 1:  # early stopping would watch nothing
        raise DataSpecError(f"{spec}: {len(train)} training images leave no validation set "
                            "(a search selects epochs on it); use more images or val_size")
    val_size = default_val if val_size is None else val_size
    if not 0 <= val_size < len(train):
        raise DataSpecError(f"val_size must be in [0, {len(train)}) for {spec}, got {val_size}")
    train, val = _split_val(train, val_size, split_seed)
    mean, std = _channel_stats(train.images)
    return Dataset(name, checksum, classes, train, val, test, mean, std)


def _load_source(spec: str, cache: Path) -> tuple[str, Split, Split, list[str]]:
    """Dispatch a non-synthetic spec to its reader; returns (name, train, test, classes)."""
    if spec == "cifar10":
        return ("cifar10", *_download_cifar10(cache))
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataSpecError(f"unknown data spec or missing path {spec!r}: {SPEC_HELP}")
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise DataSpecError(f"{path} is not a tar archive: {SPEC_HELP}")
        return (_archive_stem(path), *_cached(cache, *_file_key(path), lambda: _read_tar(path)))
    if (path / "cifar-10-batches-py").is_dir():
        return ("cifar10", *_read_cifar_batches(path / "cifar-10-batches-py"))
    if (path / "data_batch_1").is_file():
        return ("cifar10", *_read_cifar_batches(path))
    files = _read_folder(path)
    build = lambda: _decode_tree(files, str(path))
    return (path.resolve().name, *_cached(cache, *_tree_key(files), build))


def _check_known_counts(name: str, train: Split, test: Split, classes: list[str],
                        spec: str) -> None:
    """Refuse CIFAR-10 with other image counts than the data set has: a copy that lost images
    would otherwise train on fewer without a word.

    Data counts as CIFAR-10 when its classes are CIFAR-10's ten and its name starts with
    ``cifar10`` / ``cifar-10`` (a deliberate subset under another name is left alone).
    """
    if classes != CIFAR10_CLASSES or not name.lower().replace("-", "").startswith("cifar10"):
        return
    for split, part, want in zip(("train", "test"), (train, test), CIFAR10_PER_CLASS,
                                 strict=True):
        per_class = torch.bincount(part.labels, minlength=len(classes)).tolist()
        if per_class != [want] * len(classes):
            raise DataSpecError(
                f"{spec}: CIFAR-10 {split} set with {len(part):,} images "
                f"({min(per_class):,} to {max(per_class):,} per class) where CIFAR-10 has "
                f"{want * len(classes):,} ({want:,} per class): the copy is damaged or "
                "incomplete (a deliberate subset needs a name not starting with cifar10)")


def _parse_synthetic(spec: str) -> tuple[int, int]:
    if spec == "synthetic":
        return 1200, 400
    parts = spec.split(":")
    if len(parts) == 3 and all(p.isdigit() and int(p) > 0 for p in parts[1:]):
        return int(parts[1]), int(parts[2])
    raise DataSpecError(f"bad synthetic spec {spec!r}: expected 'synthetic' or "
                        "'synthetic:NTRAIN:NTEST' with positive integers")


def _synthetic(n_train: int, n_test: int) -> tuple[Split, Split, list[str]]:
    """A learnable but noisy 10-class CIFAR-shaped dataset, fixed by an internal seed.

    Each class has a smooth colour template (a random 5x5 grid upsampled to 40x40); an image
    is a random 32x32 window of its template, with random contrast and brightness, mixed
    with another class's template and Gaussian noise, so classes overlap.
    """
    g = torch.Generator().manual_seed(SYNTHETIC_SEED)
    n_classes, n = 10, n_train + n_test
    grids = torch.rand(n_classes, 3, 5, 5, generator=g)
    templates = F.interpolate(grids, size=(40, 40), mode="bicubic", align_corners=False)
    labels = torch.cat([(torch.arange(k) % n_classes)[torch.randperm(k, generator=g)]
                        for k in (n_train, n_test)])  # balanced classes in each split
    distractors = (labels + torch.randint(1, n_classes, (n,), generator=g)) % n_classes
    rows = torch.randint(0, 9, (n, 1), generator=g) + torch.arange(IMAGE_SIZE)
    cols = torch.randint(0, 9, (n, 1), generator=g) + torch.arange(IMAGE_SIZE)
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.5, 1.5, generator=g)
    brightness = 0.1 * torch.randn(n, 1, 1, 1, generator=g)
    mix = torch.empty(n, 1, 1, 1).uniform_(0.0, 0.7, generator=g)
    noise = 0.3 * torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    base = (1 - mix) * _crop(templates[labels], rows, cols) + mix * _crop(
        templates[distractors], rows, cols)
    x = 0.5 + contrast * (base - 0.5) + brightness + noise
    images = (x * 255).round().clamp(0, 255).to(torch.uint8)
    classes = [f"class{i}" for i in range(n_classes)]
    return (Split(images[:n_train], labels[:n_train]), Split(images[n_train:], labels[n_train:]),
            classes)


def _download_cifar10(root: Path) -> tuple[Split, Split, list[str]]:
    """CIFAR-10 via torchvision into ``root`` (skipped when already there)."""
    batches_dir = root / "cifar-10-batches-py"
    if not all((batches_dir / f).is_file() for f in CIFAR_FILES):
        try:
            import torchvision

            torchvision.datasets.CIFAR10(str(root), train=True, download=True)
        except Exception as e:  # network, disk, integrity: all mean "no data here"
            raise DataSpecError(f"could not download CIFAR-10 to {root}: {e}; "
                                "pass a local path instead") from None
    return _read_cifar_batches(batches_dir)


def _read_cifar_batches(d: Path) -> tuple[Split, Split, list[str]]:
    """Read torchvision's pickled CIFAR-10 batches (``cifar-10-batches-py/``)."""
    missing = [f for f in CIFAR_FILES if not (d / f).is_file()]
    if missing:
        raise DataSpecError(f"{d} is not a CIFAR-10 batches folder: missing {', '.join(missing)}")

    def read(f: str) -> dict:
        try:
            with open(d / f, "rb") as fh:
                return pickle.load(fh, encoding="latin1")
        except Exception as e:
            raise DataSpecError(f"cannot read CIFAR-10 file {d / f}: {e}") from None

    def split(files: list[str]) -> Split:
        try:
            parts = [read(f) for f in files]
            images = np.concatenate([p["data"] for p in parts]).reshape(-1, 3, 32, 32)
            labels = np.concatenate([p["labels"] for p in parts])
            return Split(torch.from_numpy(images.astype(np.uint8)),
                         torch.from_numpy(labels.astype(np.int64)))
        except (KeyError, ValueError, TypeError) as e:
            raise DataSpecError(f"malformed CIFAR-10 batches in {d}: {e}") from None

    classes = [str(c) for c in read("batches.meta").get("label_names", [])]
    return split(CIFAR_FILES[:5]), split(["test_batch"]), classes


def _archive_stem(path: Path) -> str:
    name = path.name
    for ext in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def _is_image_path(rel: str) -> bool:
    return rel.lower().endswith(IMAGE_EXTS) and not any(
        p.startswith(".") for p in rel.split("/"))


def _read_tar(path: Path) -> tuple[Split, Split, list[str]]:
    """Decode an image-folder tree straight from a tar archive, read to its very end.

    ``tarfile`` ends its listing silently at the first member header it cannot parse, and a
    gzip checksum is checked only when the stream is read to its end: so after the listing
    the rest of the stream is read, and it must be the archive's zero padding. A damaged
    archive is refused instead of loading short.
    """
    files = {}
    try:
        with tarfile.open(path) as tf:
            for m in tf:
                name = m.name.lstrip("/")
                while name.startswith("./"):
                    name = name[2:]
                if m.isfile() and _is_image_path(name):
                    files[name] = tf.extractfile(m).read()
            if not _rest_is_padding(tf.fileobj):
                raise tarfile.ReadError("data after the end of the listing (a damaged member "
                                        "header?)")
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise DataSpecError(f"cannot read archive {path}, it is damaged or truncated: "
                            f"{e}") from None
    return _decode_tree(files, str(path))


def _rest_is_padding(stream: io.BufferedIOBase) -> bool:
    """Read ``stream`` to its end (which checks a compressed stream's checksum); whether all
    that was left is zero bytes."""
    while chunk := stream.read(1 << 20):
        if chunk.count(0) != len(chunk):
            return False
    return True


def _read_folder(path: Path) -> dict[str, bytes]:
    """The tree's image files, keyed by relative posix path; the layout is checked first."""
    found = {f.relative_to(path).as_posix(): f for f in path.rglob("*")}
    rels = [rel for rel, f in found.items() if _is_image_path(rel) and f.is_file()]
    prefix = _tree_prefix(rels, str(path))
    wanted = (f"{prefix}train/", f"{prefix}test/")
    return {rel: found[rel].read_bytes() for rel in rels if rel.startswith(wanted)}


def _decode_tree(files: dict[str, bytes], where: str) -> tuple[Split, Split, list[str]]:
    """Decode ``{relpath: bytes}`` laid out as ``[wrapper/]{train,test}/<class>/<file>``.

    Images are sorted by path, and classes alphabetically, so the result never depends on
    the order files were listed or archived in.
    """
    prefix = _tree_prefix(files, where)
    by_split: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for rel in sorted(files):
        parts = rel[len(prefix):].split("/") if rel.startswith(prefix) else []
        if len(parts) == 3 and parts[0] in by_split:
            by_split[parts[0]].append((rel, parts[1]))
    classes = sorted({c for _, c in by_split["train"]})
    if not by_split["train"] or not by_split["test"]:
        raise DataSpecError(f"{where}: no images in train/<class>/ or test/<class>/")
    unknown = sorted({c for _, c in by_split["test"]} - set(classes))
    if unknown:
        raise DataSpecError(f"{where}: test classes not in train: {', '.join(unknown)}")
    index = {c: i for i, c in enumerate(classes)}

    def decode(entries: list[tuple[str, str]]) -> Split:
        out = np.empty((len(entries), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        for i, (rel, _) in enumerate(entries):
            out[i] = _decode_image(files[rel], f"{where}:{rel}")
        labels = torch.tensor([index[c] for _, c in entries], dtype=torch.int64)
        return Split(torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), labels)

    return decode(by_split["train"]), decode(by_split["test"]), classes


def _tree_prefix(files: Collection[str], where: str) -> str:
    """The path prefix of train/ and test/: "" at the top, "wrapper/" inside one folder."""
    tops = sorted({rel.split("/", 1)[0] for rel in files})
    candidates = [""] + ([f"{tops[0]}/"] if len(tops) == 1 else [])
    for prefix in candidates:
        if all(any(r.startswith(f"{prefix}{s}/") for r in files) for s in ("train", "test")):
            return prefix
    raise DataSpecError(f"{where}: expected an image-folder tree with train/<class>/* and "
                        "test/<class>/* images (optionally inside one top-level folder), found "
                        f"{len(files)} images elsewhere")


def _decode_image(data: bytes, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise DataSpecError(f"image {where} is {im.size[0]}x{im.size[1]}, expected 32x32")
            return np.asarray(im.convert("RGB"))
    except DataSpecError:
        raise
    except Exception as e:
        raise DataSpecError(f"cannot decode image {where}: {e}") from None


# ------------------------------------------------------------------------------ caching


def _file_key(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest(), path.stat().st_size


def _tree_key(files: dict[str, bytes]) -> tuple[str, int]:
    """Content key of a folder tree: its relative paths and file bytes."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + len(files[rel]).to_bytes(8, "little"))
        h.update(files[rel])
    return h.hexdigest(), sum(len(b) for b in files.values())


def _cached(cache: Path, key: str, size: int, build) -> tuple[Split, Split, list[str]]:
    """Decoded (train, test, classes) from the cache, or ``build()`` them and store them.

    A cache file that cannot be read or fails its checksum is rebuilt; writes go through a
    temp file + ``os.replace`` so concurrent processes never see a half-written file.
    """
    path = cache / f"lthdata-v{CACHE_VERSION}-{key}-{size}.pt"
    if path.is_file():
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            train = Split(d["train_images"], d["train_labels"])
            test = Split(d["test_images"], d["test_labels"])
            classes = [str(c) for c in d["classes"]]
            if _checksum(train, test) == d["checksum"]:
                return train, test, classes
            raise ValueError("checksum mismatch")
        except Exception as e:
            warnings.warn(f"ignoring corrupt data cache {path} ({_one_line(str(e))}); rebuilding",
                          stacklevel=3)
    train, test, classes = build()
    blob = {"train_images": train.images, "train_labels": train.labels,
            "test_images": test.images, "test_labels": test.labels,
            "classes": classes, "checksum": _checksum(train, test)}
    try:
        atomic_torch_save(path, blob)
    except OSError as e:
        warnings.warn(f"could not write data cache {path}: {e}", stacklevel=3)
    return train, test, classes


# ------------------------------------------------------------------------- split, stats


def _checksum(train: Split, test: Split) -> str:
    """sha256 of the decoded content (shapes, pixels, labels), whatever the source format."""
    h = hashlib.sha256()
    for t in (train.images, train.labels, test.images, test.labels):
        a = t.detach().cpu().contiguous().numpy()
        h.update(str(a.shape).encode())
        h.update(a.astype(a.dtype.newbyteorder("<"), copy=False))  # little-endian labels
    return h.hexdigest()


def _split_val(train: Split, val_size: int, seed: int) -> tuple[Split, Split]:
    """Hold out ``val_size`` images, stratified by class, from a seeded permutation.

    Each image gets a key (rank within its class in the permutation + 0.5) / class size;
    taking the smallest keys draws every class in proportion. Both index sets are sorted so
    the splits keep the source order.
    """
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(train), generator=g)
    permuted = train.labels[perm]
    key = torch.empty(len(train), dtype=torch.float64)
    for c in permuted.unique():
        pos = (permuted == c).nonzero().squeeze(1)
        key[pos] = (torch.arange(len(pos), dtype=torch.float64) + 0.5) / len(pos)
    order = perm[torch.argsort(key, stable=True)]
    val_idx, train_idx = order[:val_size].sort().values, order[val_size:].sort().values
    return (Split(train.images[train_idx], train.labels[train_idx]),
            Split(train.images[val_idx], train.labels[val_idx]))


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std in [0, 1] units, exact, from 256-bin histograms."""
    hist = torch.stack([torch.bincount(images[:, c].reshape(-1), minlength=256)
                        for c in range(images.shape[1])]).to(torch.float64)
    values = torch.arange(256, dtype=torch.float64) / 255
    count = hist.sum(1)
    mean = hist @ values / count
    std = (hist @ (values * values) / count - mean * mean).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


# ------------------------------------------------------------------- augment and batch


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 ``(x / 255 - mean) / std`` on the same device."""
    m, s = _stats_tensors(mean, std, images.device)
    return _normalize(images, m, s)


def _stats_tensors(mean, std, device) -> tuple[torch.Tensor, torch.Tensor]:
    """mean and std scaled to uint8 units, shaped to broadcast over (B, 3, H, W)."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255
    return m.to(device), s.to(device)


def _normalize(images: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    return images.to(torch.float32).sub_(m).div_(s)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (4-pixel zero padding) + random horizontal flip of a uint8 batch, drawn
    from the CPU ``generator`` so that the output is the same on every device."""
    b, _, h, w = images.shape
    return apply_augment(images, *draw_augment(b, h, w, generator))


def draw_augment(b: int, h: int, w: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The random part of ``augment``: source rows and columns (flip folded in) per image."""
    rows = torch.randint(0, 2 * PAD + 1, (b, 1), generator=generator) + torch.arange(h)
    cols = torch.randint(0, 2 * PAD + 1, (b, 1), generator=generator) + torch.arange(w)
    flip = torch.randint(0, 2, (b, 1), generator=generator).bool()
    return rows, torch.where(flip, cols.flip(1), cols)


def apply_augment(images: torch.Tensor, rows: Tensor, cols: Tensor) -> torch.Tensor:
    """The deterministic part of ``augment``: pad, then crop at ``rows`` x ``cols``."""
    return _crop(F.pad(images, (PAD, PAD, PAD, PAD)), rows, cols)


def _crop(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``out[i, c, y, x] = images[i, c, rows[i, y], cols[i, x]]``: two batched gathers."""
    b, c, _, w = images.shape
    rows, cols = rows.to(images.device), cols.to(images.device)
    h_out, w_out = rows.shape[1], cols.shape[1]
    picked = images.gather(2, rows[:, None, :, None].expand(b, c, h_out, w))
    return picked.gather(3, cols[:, None, None, :].expand(b, c, h_out, w_out))


def batches(
    split: Split,
    batch_size: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device | str,
    shuffle: bool,
    augment: bool,
    generator: torch.Generator | None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of ``(x, y)``: x float32 normalised on ``device``, y int64 on ``device``.

    The permutation (drawn first) and augmentations (one draw per batch) come only from the
    CPU ``generator``. Batches are gathered where ``split`` lives (no copy of the whole split
    when it is already on ``device``) and moved to ``device`` one at a time. Arguments are
    checked at the call, the permutation is drawn at the first ``next``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if (shuffle or augment) and generator is None:
        raise ValueError("shuffle/augment need an explicit CPU torch.Generator")
    m, s = _stats_tensors(mean, std, device)
    plan = epoch_plan(len(split), batch_size, shuffle=shuffle, augment=augment,
                      generator=generator, drop_last=drop_last,
                      image_hw=tuple(split.images.shape[2:]))

    def epoch() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx, rows, cols in plan:
            idx = idx.to(split.images.device)
            x = split.images[idx].to(device, non_blocking=True)
            y = split.labels[idx].to(device, non_blocking=True)
            if rows is not None:
                x = apply_augment(x, rows, cols)
            yield _normalize(x, m, s), y

    return epoch()


def epoch_plan(
    n: int, batch_size: int, *, shuffle: bool, augment: bool, generator: torch.Generator | None,
    drop_last: bool = False, image_hw: tuple[int, int] = (32, 32),
) -> Iterator[tuple[Tensor, Tensor | None, Tensor | None]]:
    """The random draws of one epoch, in order: ``(indices, rows, cols)`` per batch (CPU).

    Drawing is kept apart from gathering so a population of runs can draw each member's plan
    from its own generator and then gather every member's batch in one device operation.
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        if augment:
            yield (idx, *draw_augment(len(idx), *image_hw, generator))
        else:
            yield idx, None, None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
