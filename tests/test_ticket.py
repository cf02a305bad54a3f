"""A winning ticket as a model: kept, loaded with its record's accuracy, exported three ways."""

from __future__ import annotations

import functools
import json
import warnings

import pytest
import torch
from conftest import tiny_config

from lth_core import build, load_results, load_ticket
from lth_core.analysis.metrics import run_summary
from lth_core.cli import main
from lth_core.engine.search import run_search
from lth_core.engine.train import evaluate
from lth_core.pruning import prunable_weights

CFG = tiny_config(stages=3)
LENET5 = functools.partial(build, "lenet5")


def _search(root, data, keep):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the records of the retraining below: same kernels, one thread
    try:
        run_search(LENET5, data, CFG, name="lenet5", runs=1, results=root, device="cpu",
                   keep_weights=keep, progress=False)
    finally:
        torch.set_num_threads(threads)
    return load_results(root)


@pytest.fixture(scope="module")
def kept_all(tmp_path_factory, tiny_data):
    root = tmp_path_factory.mktemp("all")
    return root, _search(root, tiny_data, "all")


def _within_one_example(got: float, want: float, split) -> bool:
    return abs(got - want) <= 100.0 / len(split) + 1e-9


def test_kept_tickets_load_with_their_records_accuracy(kept_all, tiny_data):
    root, df = kept_all
    assert sorted(p.name for p in (root / "lenet5" / "run-000").glob("ticket-*")) == [
        "ticket-stage-0.pt", "ticket-stage-1.pt", "ticket-stage-2.pt"]
    for k in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # kept: nothing is retrained
            model, masks, rec = load_ticket(root, "lenet5", 0, k)
        assert rec["stage"] == k
        # evaluated here on the data it was recorded on: the same number, bit for bit
        assert evaluate(model, tiny_data.test, tiny_data, torch.device("cpu")) == rec["test_acc"]
        weights = prunable_weights(model)
        for n, m in masks.items():
            assert torch.all(weights[n][~m] == 0)
        assert sum(int(m.sum()) for m in masks.values()) == rec["n_weights"]


def test_a_ticket_not_kept_is_retrained_to_its_record(tmp_path, tiny_data):
    df = _search(tmp_path, tiny_data, "none")
    assert not list(tmp_path.rglob("ticket-*"))
    with pytest.raises(ValueError, match="not kept; give the data"):
        load_ticket(tmp_path, "lenet5", 0, 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.warns(UserWarning, match="retrained"):
            model, _, rec = load_ticket(tmp_path, "lenet5", 0, 2, data=tiny_data)
    finally:
        torch.set_num_threads(threads)
    got = evaluate(model, tiny_data.test, tiny_data, torch.device("cpu"))
    # same process, kernels and seed: measured equal; one example is what floats promise
    assert _within_one_example(got, rec["test_acc"], tiny_data.test)
    assert rec["test_acc"] == df[df.stage == 2]["test_acc"].item()


def test_keep_best_keeps_the_two_selected_tickets_only(tmp_path, tiny_data):
    df = _search(tmp_path, tiny_data, "best")
    s = run_summary(df).iloc[0]
    want = {int(s[f"{k}_stage"]) for k in ("best_sparse", "sparsest_matching")
            if s[f"{k}_stage"] == s[f"{k}_stage"]}  # NaN: no winner
    got = {int(p.stem.rsplit("-", 1)[1]) for p in tmp_path.rglob("ticket-stage-*.pt")}
    assert got == want


def test_lth_ticket_exports_state_dict_and_prune_forms(kept_all, tmp_path, capsys, tiny_data):
    root, df = kept_all
    base = ["ticket", "--results", str(root), "--arch", "lenet5", "--run", "0"]
    assert main(base + ["--stage", "2", "--out", str(tmp_path / "t.pt")]) == 0
    out = capsys.readouterr().out
    rec = df[df.stage == 2].iloc[0]
    assert f"density {rec['density']:.4f}" in out and f"{rec['test_acc']:.2f} %" in out
    blob = torch.load(tmp_path / "t.pt", weights_only=True)
    model = build("lenet5")
    model.load_state_dict(blob["state_dict"])
    for n, m in blob["masks"].items():
        assert torch.all(blob["state_dict"][n][~m] == 0)

    assert main(base + ["--stage", "2", "--out", str(tmp_path / "p.pt"),
                        "--format", "prune"]) == 0
    pruned = torch.load(tmp_path / "p.pt", weights_only=False)
    masks = blob["masks"]
    modules = dict(pruned.named_modules())
    for n, m in masks.items():
        owner, _, param = n.rpartition(".")
        assert torch.equal(getattr(modules[owner], f"{param}_mask").bool(), m)
    # fine-tuning with PyTorch's own pruning API: the mask holds through an SGD step
    opt = torch.optim.SGD(pruned.parameters(), lr=0.5)
    x, y = tiny_data.train.images[:8].float() / 255, tiny_data.train.labels[:8]
    torch.nn.functional.cross_entropy(pruned(x), y).backward()
    opt.step()
    pruned(x)  # the pruned weights are recomputed from weight_orig * weight_mask
    for n, m in masks.items():
        owner, _, param = n.rpartition(".")
        assert torch.all(getattr(modules[owner], param)[~m] == 0)


def test_lth_ticket_onnx(kept_all, tmp_path):
    pytest.importorskip("onnx", reason="the onnx package is not installed")
    root, _ = kept_all
    assert main(["ticket", "--results", str(root), "--arch", "lenet5", "--run", "0",
                 "--stage", "1", "--out", str(tmp_path / "t.onnx"), "--format", "onnx"]) == 0
    import onnx

    onnx.checker.check_model(onnx.load(str(tmp_path / "t.onnx")))


def test_lth_ticket_bad_input_is_one_line_exit_2(kept_all, tmp_path, capsys):
    root, df = kept_all
    # a copy whose pruned stages all fell below the dense one: no winning ticket
    lost = tmp_path / "lost"
    run_dir = lost / "lenet5" / "run-000"
    run_dir.mkdir(parents=True)
    for p in (root / "lenet5" / "run-000").iterdir():
        if p.is_file():
            (run_dir / p.name).write_bytes(p.read_bytes())
    for k in (1, 2):
        rec = json.loads((run_dir / f"stage-{k}.json").read_text())
        rec["test_acc"] = df[df.stage == 0]["test_acc"].item() - 1.0
        (run_dir / f"stage-{k}.json").write_text(json.dumps(rec))
    cases = [
        (["--results", str(root), "--run", "7"], "no run 7"),
        (["--results", str(root), "--run", "0", "--stage", "9"], "stage 9 is not recorded"),
        (["--results", str(root), "--run", "0", "--stage", "fast"], "best, sparsest"),
        (["--results", str(lost), "--run", "0"], "no winning ticket"),
        (["--results", str(tmp_path / "nowhere"), "--run", "0"], "not a directory"),
        (["--results", str(root), "--run", "0", "--stage", "1", "--format", "onnx"]
         if _no_onnx() else ["--results", str(root), "--run", "x"], "onnx" if _no_onnx()
         else "not an integer"),
    ]
    for args, expected in cases:
        code = main(["ticket", "--arch", "lenet5", "--out", str(tmp_path / "x.pt"), *args])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and expected in err, (args, err)
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "x.pt").exists()


def _no_onnx() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return True
    return False
