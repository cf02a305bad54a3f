import pytest
import torch
from kernel_paths import run_under_default_kernels
from torch import nn

from lth_core.config import TrainConfig
from lth_core.data import normalize
from lth_core.engine.stage import init_model, rewound
from lth_core.engine.train import evaluate, train_stage
from lth_core.models import build
from lth_core.pruning import lamp_masks, prunable_weights
from lth_core.store import ResultsStore

CPU = torch.device("cpu")


def test_masks_hold_through_sgd_momentum_and_weight_decay(tiny_data, tmp_path):
    torch.manual_seed(0)
    model = build("lenet5")
    masks = lamp_masks(model, 0.6)
    model.load_state_dict(rewound({k: v.clone() for k, v in model.state_dict().items()}, masks))
    cfg = TrainConfig(lr=0.1, momentum=0.9, weight_decay=5e-2, max_epochs=2, patience=2,
                      batch_size=64)
    seen = []
    out = train_stage(model, masks, tiny_data, cfg, seed=0, device=CPU,
                      on_epoch=lambda st: seen.append(st))
    weights = prunable_weights(model)
    for name, m in masks.items():
        assert torch.all(weights[name][~m] == 0), f"{name}: pruned weight moved"
        assert torch.all(out.state[name][~m] == 0)
        assert torch.count_nonzero(weights[name][m]) > 0.9 * m.sum()
    # momentum buffers of pruned weights never fill up either
    mom = seen[-1]["optimizer"]["state"]
    params = [n for n, _ in model.named_parameters()]
    for idx, st in mom.items():
        name = params[idx]
        if name in masks:
            assert torch.all(st["momentum_buffer"][~masks[name]] == 0)
    # and the masks survive a checkpoint round trip
    store = ResultsStore(tmp_path)
    store.save_checkpoint("lenet5", 0, {"masks": [masks], "state": out.state})
    back = store.load_checkpoint("lenet5", 0)
    for name, m in masks.items():
        assert torch.equal(back["masks"][0][name], m)
        assert torch.all(back["state"][name][~m] == 0)


def test_rewind_restores_initial_weights_exactly():
    theta_model = init_model(lambda: build("resnet32"), seed=123)
    theta = {k: v.clone() for k, v in theta_model.state_dict().items()}
    model = init_model(lambda: build("resnet32"), seed=123)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in theta.items())
    masks = lamp_masks(model, 0.3)
    with torch.no_grad():  # "training"
        for p in model.parameters():
            p.add_(1.0)
        for b in model.buffers():
            b.add_(1)
    model.load_state_dict(rewound(theta, masks))
    sd = model.state_dict()
    for k, v in theta.items():
        if k in masks:
            assert torch.equal(sd[k][masks[k]], v[masks[k]])
            assert torch.all(sd[k][~masks[k]] == 0)
        else:
            assert torch.equal(sd[k], v)


def test_early_stopping_keeps_best_validation_weights(tiny_data):
    """lr 0.2 overshoots after epoch 1 (val 35 %, then 10 % and 14 %), so the stage stops
    early, by margins of 20 examples that no kernel path's rounding closes."""
    torch.manual_seed(0)
    model = build("lenet5")
    cfg = TrainConfig(lr=0.2, max_epochs=6, patience=2, batch_size=64)
    out = train_stage(model, None, tiny_data, cfg, seed=1, device=CPU)
    accs = [h["val_acc"] for h in out.history]
    assert out.epochs == len(accs) < cfg.max_epochs  # it stopped early...
    assert out.epochs - out.best_epoch == cfg.patience  # ...after `patience` epochs without gain
    assert out.best_epoch == accs.index(max(accs)) + 1 and out.best_val_acc == max(accs)
    # It returns the best epoch's weights, not the last ones. Equal accuracies bit for bit:
    # the same process, kernels and evaluation as during training, on purpose.
    assert evaluate(model, tiny_data.val, tiny_data, CPU) == accs[-1] != out.best_val_acc
    model.load_state_dict(out.state)
    assert evaluate(model, tiny_data.val, tiny_data, CPU) == out.best_val_acc


def test_resumed_stage_equals_uninterrupted(tiny_data):
    """Bit for bit, on purpose: one engine, one process, the same kernels, so a resumed stage
    must redo exactly the float operations of the uninterrupted one (derived seeds, restored
    momentum). Across engines or machines, see test_population.py."""
    cfg = TrainConfig(lr=0.05, max_epochs=3, patience=3, batch_size=64)
    states = []
    model = init_model(lambda: build("lenet5"), 5)
    full = train_stage(model, None, tiny_data, cfg, seed=9, device=CPU,
                       on_epoch=lambda st: states.append(st))
    model2 = init_model(lambda: build("lenet5"), 5)
    resumed = train_stage(model2, None, tiny_data, cfg, seed=9, device=CPU, resume=states[0])
    assert [h["val_acc"] for h in full.history] == [h["val_acc"] for h in resumed.history]
    for k, v in full.state.items():
        assert torch.equal(v, resumed.state[k]), k


def test_resume_is_exact_on_the_default_kernels_too():
    run_under_default_kernels(["tests/test_training.py::test_resumed_stage_equals_uninterrupted"])


def _near_tie_model(data) -> nn.Module:
    """Every logit is 10 + 1e-3 x (one-hot of the test label), fitted by least squares: fp32
    gets the whole test set right; bf16 (spacing 1/16 near 10) makes all ten logits 10.0 and
    calls class 0."""
    x = normalize(data.test.images, data.mean, data.std).flatten(1).double()
    y = nn.functional.one_hot(data.test.labels, 10).double()
    model = nn.Sequential(nn.Flatten(), nn.Linear(x.shape[1], 10))
    with torch.no_grad():
        model[1].weight.copy_(1e-3 * (torch.linalg.pinv(x) @ y).T)
        model[1].bias.fill_(10.0)
    return model


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_evaluate_runs_in_fp32(device, tiny_data):
    """bf16 evaluation would flip near-tie calls: evaluate is fp32, also inside
    a caller's bf16 autocast (same process and kernels: equal bit for bit, on purpose)."""
    dev = torch.device(device)
    model = _near_tie_model(tiny_data).to(dev)
    split = tiny_data.test
    fp32 = evaluate(model, split, tiny_data, dev)
    x = normalize(split.images, tiny_data.mean, tiny_data.std).to(dev)
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16):
        bf16 = 100.0 * float((model(x).argmax(1).cpu() == split.labels).double().mean())
        inside = evaluate(model, split, tiny_data, dev)
    assert fp32 == 100.0 and bf16 < 50.0  # what bf16 would report instead
    assert inside == fp32
