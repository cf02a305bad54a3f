"""Bad input never gives a wrong answer (issue 20): each case is refused in one line before
anything is written, or reported and recomputed; nothing stored is lost or rewritten."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

from lth_core.cli import main
from lth_core.config import ConfigError, SearchConfig, TrainConfig, search_config_from_dict
from lth_core.data import CIFAR10_CLASSES, DataSpecError, load_data
from lth_core.engine.search import run_search, ticket_search
from lth_core.models import build
from lth_core.store import CorruptRecordWarning, StoreError, declared_stages, load_results

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


# ------------------------------------------------- cases 2-4: one model, one setup, one folder

class Tiny(nn.Module):
    """A seconds-long model: one linear layer on the pixels."""

    def __init__(self, hidden: int = 0) -> None:
        super().__init__()
        self.fc = (nn.Linear(3 * 32 * 32, 10) if not hidden else
                   nn.Sequential(nn.Linear(3 * 32 * 32, hidden), nn.ReLU(), nn.Linear(hidden, 10)))

    def forward(self, x):
        return self.fc(x.flatten(1))


def quick(stages: int = 2, **train) -> SearchConfig:
    return SearchConfig(stages=stages, arc_pairs=1, arc_points=8, hidden_runs=0,
                        train=TrainConfig(**{"lr": 0.05, "max_epochs": 1, "patience": 1,
                                             "batch_size": 100, **train}))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "ckpt" not in p.parts and p.name != ".lock"}


@pytest.fixture(scope="module")
def data():
    return load_data("synthetic:300:100")


@pytest.fixture(scope="module")
def searched(tmp_path_factory, data) -> Path:
    """One run of ``Tiny`` under its default name, K = 2."""
    root = tmp_path_factory.mktemp("searched")
    df = ticket_search(Tiny, data, quick(), runs=1, results=root, progress=False)
    assert sorted(df["stage"]) == [0, 1] and set(df["arch"]) == {"Tiny"}
    return root


def test_the_default_name_is_the_models_class_and_its_structure_is_recorded(searched):
    meta = json.loads((searched / "Tiny" / "search.json").read_text())
    assert meta["name"] == "Tiny" and meta["model"]["class"] == "Tiny"
    assert meta["model"]["shapes"] == {"fc.weight": [10, 3072], "fc.bias": [10]}
    rec = json.loads((searched / "Tiny" / "run-000" / "stage-0.json").read_text())
    assert rec["provenance"]["model"] == {k: meta["model"][k]
                                          for k in ("class", "structure_sha256")}


def test_another_model_under_a_stored_name_is_refused(searched, data):
    before = _files(searched)
    for other in (lambda: Tiny(hidden=4), lambda: nn.Sequential(nn.Flatten(),
                                                                nn.Linear(3072, 10))):
        with pytest.raises(StoreError, match="another model under the name 'Tiny'"):
            run_search(other, data, quick(), name="Tiny", results=searched, progress=False)
    assert _files(searched) == before


@pytest.mark.parametrize("damage", ["deleted", "emptied", "damaged", "null"])
def test_a_lost_search_json_is_checked_against_the_records_and_rebuilt(searched, data,
                                                                       tmp_path, damage):
    root = tmp_path / "r"
    shutil.copytree(searched, root)
    meta = root / "Tiny" / "search.json"
    original = meta.read_bytes()
    if damage == "deleted":
        meta.unlink()
    else:
        meta.write_text({"emptied": "", "damaged": original.decode()[:40], "null": "null"}[damage])
    before = _files(root)
    with pytest.raises(StoreError, match="prune_rate: 0.16 there, 0.5 now"):
        run_search(Tiny, data, dataclasses.replace(quick(3), prune_rate=0.5), results=root,
                    progress=False)
    assert _files(root) == before
    with pytest.warns(CorruptRecordWarning, match="rebuilt from the setup its 2 records"):
        run_search(Tiny, data, quick(), results=root, progress=False)
    assert meta.read_bytes() == original
    assert {k: v for k, v in _files(root).items() if k != "Tiny/search.json"} == {
        k: v for k, v in before.items() if k != "Tiny/search.json"}


@pytest.mark.parametrize("name", ["a/b", "", "..", ".", "../outside", " x", "a\\b"])
def test_a_name_that_is_not_one_folder_is_refused_before_writing(tmp_path, data, name):
    root = tmp_path / "results"
    with pytest.raises(StoreError, match="name"):
        run_search(Tiny, data, quick(), name=name, results=root, progress=False)
    assert list(tmp_path.iterdir()) == []  # not even the results folder


def test_an_empty_results_path_is_refused(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="results path is empty"):
        run_search(Tiny, data, quick(), results="", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_first_stage_does_not_block_the_corrected_rerun(tmp_path, data):
    report = run_search(Tiny, data, quick(lr=1e30), results=tmp_path, progress=False)
    assert list(report.failed) == [0]  # diverged: search.json and init.json were written
    with pytest.warns(CorruptRecordWarning, match="no finished stage of its setup"):
        df = ticket_search(Tiny, data, quick(), results=tmp_path, progress=False)
    assert sorted(df["stage"]) == [0, 1]
    meta = json.loads((tmp_path / "Tiny" / "search.json").read_text())
    assert meta["config"]["train"]["lr"] == 0.05
    with pytest.raises(StoreError, match="another setup"):  # now it has records: binding
        run_search(Tiny, data, quick(lr=0.1), results=tmp_path, progress=False)


# ------------------------------------------------------ record schema: corrupt is recomputed

CORRUPT = {
    "null": "null", "number": "3", "list": "[1, 2]",
    "test_acc text": {"test_acc": "abc"}, "test_acc nan": {"test_acc": math.nan},
    "density 2": {"density": 2.0}, "run of another run": {"run": 5},
    "stage of another stage": {"stage": 0}, "arch of another": {"arch": "Other"},
    "epochs bool": {"epochs": True}, "best epoch after the end": {"best_epoch": 9},
    "provenance list": {"provenance": []},
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_record_is_reported_by_name_and_recomputed(searched, data, tmp_path, case):
    root = tmp_path / "r"
    shutil.copytree(searched, root)
    path = root / "Tiny" / "run-000" / "stage-1.json"
    good = json.loads(path.read_text())
    change = CORRUPT[case]
    path.write_text(change if isinstance(change, str) else json.dumps({**good, **change}))
    with pytest.warns(CorruptRecordWarning, match=f"corrupt file {path}"):
        df = load_results(root)
    assert sorted(df["stage"]) == [0]
    with pytest.warns(CorruptRecordWarning, match=f"corrupt file {path}"):
        df = ticket_search(Tiny, data, quick(), results=root, progress=False)
    assert sorted(df["stage"]) == [0, 1]
    fresh = json.loads(path.read_text())
    assert fresh["test_acc"] == good["test_acc"] and fresh["run"] == 0


# ------------------------------------------------------------- case 5: the report's K

def test_the_report_counts_runs_with_the_declared_k_and_says_how_many_it_left_out(
        searched, tmp_path, capsys):
    root = tmp_path / "r"
    shutil.copytree(searched, root)
    meta_path = root / "Tiny" / "search.json"
    assert json.loads(meta_path.read_text())["stages"] == 2
    assert main(["report", "--results", str(root)]) == 0
    assert "left out" not in capsys.readouterr().out
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "stages": 3}))  # a search declared K = 3 ...
    assert main(["report", "--results", str(root)]) == 2  # ... and has recorded stages 0-1
    err = capsys.readouterr().err
    assert "no complete run" in err and "1 incomplete run left out (fewer than K = 3" in err
    del meta["stages"]  # declared by no search (older folders): K from the records, said so
    meta_path.write_text(json.dumps(meta))
    assert main(["report", "--results", str(root)]) == 0
    assert "K = 2 read from the records" in capsys.readouterr().out
    assert main(["report", "--results", str(root), "--stages", "3"]) == 2
    assert "fewer than K = 3" in capsys.readouterr().err


def test_a_continued_search_declares_its_larger_k(searched, data, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(searched, root)
    run_search(Tiny, data, quick(1), results=root, progress=False)  # fewer: K stays
    assert declared_stages(root) == {"Tiny": 2}
    run_search(Tiny, data, quick(3), results=root, progress=False)
    assert declared_stages(root) == {"Tiny": 3}


# ----------------------------------------------------------- the CLI: one line, exit code 2

CLI = ["search", "--arch", "lenet5", "--runs", "1", "--stages", "1", "--max-epochs", "1",
       "--batch-size", "100", "--data", "synthetic:300:100", "--no-progress", "--device", "cpu"]

BAD_FLAGS = {"--lr": ["nan", "inf"], "--momentum": ["-1"], "--weight-decay": ["-1"],
             "--eval-batch-size": ["0"], "--label-smoothing": ["2"], "--warmup-epochs": ["-1"]}


@pytest.mark.parametrize("flag,value", [(f, v) for f, vs in BAD_FLAGS.items() for v in vs])
def test_a_bad_training_flag_writes_nothing(tmp_path, capsys, flag, value):
    root = tmp_path / "results"
    assert main(CLI + [flag, value, "--results", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag.lstrip("-").replace("-", "_") in err
    assert not root.exists()


@pytest.mark.parametrize("args,expected", [
    (["--results", ""], "results path is empty"),
    (["--arch", "lenet5-w1000"], "above 16"),
])
def test_bad_paths_and_names_on_the_cli(tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    assert main(CLI + args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert list(tmp_path.iterdir()) == []


def test_more_classes_than_the_model_has_outputs_is_refused(tmp_path, capsys):
    tree = _image_tree(tmp_path / "eleven", [f"c{i:02d}" for i in range(11)], 2)
    root = tmp_path / "results"
    assert main(_cli_with("--data", str(tree)) + ["--results", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "10 outputs but the data" in err and "11 classes" in err
    assert not (root / "lenet5").exists()


def _cli_with(flag: str, value: str) -> list[str]:
    args = list(CLI)
    args[args.index(flag) + 1] = value
    return args


@pytest.mark.parametrize("error,expected,code", [
    (OSError(28, "No space left on device", "/r/lenet5/run-000/stage-0.json"),
     "No space left on device (/r/lenet5/run-000/stage-0.json)", 2),
    (zlib.error("invalid distance too far back"), "damaged compressed data", 2),
    (KeyboardInterrupt(), "interrupted", 130),
])
def test_the_cli_error_boundary(tmp_path, capsys, monkeypatch, error, expected, code):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("lth_core.engine.search.run_search", fail)
    assert main(CLI + ["--results", str(tmp_path)]) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err


def test_the_cli_imports_no_torch_before_its_error_boundary():
    """Ctrl-C during the heavy imports must reach ``main``'s boundary, not a traceback."""
    code = "import sys, lth_core.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "False"


def test_workers_against_another_setup_exit_2_with_the_setup_message(tmp_path, capsys):
    root = tmp_path / "results"
    assert main(CLI + ["--results", str(root)]) == 0
    capsys.readouterr()
    before = _files(root)
    assert main(CLI + ["--prune-rate", "0.3", "--workers", "2", "--runs", "2",
                       "--results", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "another setup (config.prune_rate: 0.16 there, 0.3 now)" in err
    assert _files(root) == before
    cfg = SearchConfig(stages=1, prune_rate=0.3, train=TrainConfig(lr=0.05, max_epochs=1,
                                                                    batch_size=100))
    with pytest.raises(StoreError, match="another setup"):  # refused before any worker starts
        run_search(functools.partial(build, "lenet5"), load_data("synthetic:300:100"), cfg,
                   name="lenet5", runs=[1, 2], results=root, workers=2)
    assert _files(root) == before


# -- models that "any nn.Module" covers -------------------------------------------------------
class Tied(nn.Module):
    """A linear layer whose weight is shared by a second one (b.weight = a.weight)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3 * 32 * 32, 3 * 32 * 32 // 64, bias=False)
        self.mid = nn.Linear(3 * 32 * 32 // 64, 3 * 32 * 32, bias=False)
        self.b = nn.Linear(3 * 32 * 32, 3 * 32 * 32 // 64, bias=False)
        self.b.weight = self.a.weight
        self.head = nn.Linear(3 * 32 * 32 // 64, 10)

    def forward(self, x):
        return self.head(self.b(self.mid(self.a(x.flatten(1)))))


class Lazy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.LazyLinear(32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_tied_weights_are_one_weight_with_one_mask(tmp_path, data):
    from lth_core.pruning import prunable_weights

    assert list(prunable_weights(Tied())) == ["a.weight", "mid.weight", "head.weight"]
    df = ticket_search(Tied, data, quick(3), results=tmp_path, progress=False)
    model = Tied()
    n = sum(w.numel() for w in prunable_weights(model).values())
    assert df["n_weights"].iloc[0] == n  # the shared tensor counted once
    assert df["density"].round(4).tolist() == [1.0, 0.84, round(0.84 ** 2, 4)]


def test_lazy_modules_are_materialised_under_each_runs_seed(tmp_path, data):
    df = ticket_search(Lazy, data, quick(2), runs=2, results=tmp_path, progress=False)
    assert len(df) == 4 and df["n_weights"].iloc[0] == 3 * 32 * 32 * 32 + 32 * 10
    inits = {json.loads((tmp_path / "Lazy" / f"run-00{r}" / "init.json").read_text())
             ["theta_init_sha256"] for r in (0, 1)}
    assert len(inits) == 2  # each run its own initial weights


def test_a_parametrised_weight_is_refused_in_one_line_before_writing(tmp_path, data):
    from torch.nn.utils.parametrizations import weight_norm

    def normed():
        return nn.Sequential(nn.Flatten(), weight_norm(nn.Linear(3 * 32 * 32, 10)))

    with pytest.raises(ValueError, match="weight_norm") as err:
        run_search(normed, data, quick(), name="normed", results=tmp_path, progress=False)
    assert "\n" not in str(err.value)
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize("damage", ["null", "{}", "not json"])
def test_a_damaged_init_json_is_reported_by_name(tmp_path, data, damage):
    run_search(Tiny, data, quick(1), results=tmp_path, progress=False)
    init = tmp_path / "Tiny" / "run-000" / "init.json"
    good = init.read_text()
    init.write_text(damage)
    with pytest.warns(CorruptRecordWarning, match="init.json"):
        run_search(Tiny, data, quick(2), results=tmp_path, progress=False)
    assert json.loads(init.read_text()) == json.loads(good)  # rewritten: same seed, same weights


def test_fields_that_do_not_change_cpu_results_are_not_another_setup(tmp_path, data):
    """--no-amp, --no-cuda-graphs and --cudnn-benchmark on a CPU compute what the defaults
    did there; channels-last (other kernels, other float sums) is another setup."""
    run_search(Tiny, data, quick(1), results=tmp_path, device="cpu", progress=False)
    for train in (dict(amp=False), dict(cuda_graphs=False), dict(amp=False, cuda_graphs=False),
                  dict(cudnn_benchmark=True)):
        report = run_search(Tiny, data, quick(1, **train), results=tmp_path, device="cpu",
                            progress=False)
        assert report.finished == [0]
    for train in (dict(lr=0.07), dict(channels_last=True)):  # what does change results
        with pytest.raises(StoreError, match="another setup"):
            run_search(Tiny, data, quick(1, **train), results=tmp_path, device="cpu",
                       progress=False)
    # on a GPU amp is bf16: there it is another setup (the identity, as the store compares it)
    from lth_core.config import setup_identity, to_dict
    from lth_core.store import setup_difference

    stored = {"config": setup_identity(to_dict(quick(1)))}
    wanted = {"config": setup_identity(to_dict(quick(1, amp=False)))}
    assert setup_difference(stored, wanted, "cpu") is None
    assert "amp" in setup_difference(stored, wanted, "cuda")
    bench = {"config": setup_identity(to_dict(quick(1, cudnn_benchmark=True)))}
    assert setup_difference(stored, bench, "cuda") is None
