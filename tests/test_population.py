"""The population engine equals S runs trained one by one, and resumes like them."""

import torch

from lth_core.config import TrainConfig
from lth_core.engine.population import Member, population_batches, train_population_stage
from lth_core.engine.search import init_model, rewind
from lth_core.engine.train import train_stage
from lth_core.models import build
from lth_core.pruning import lamp_masks

CPU = torch.device("cpu")
CFG = TrainConfig(lr=0.05, max_epochs=4, patience=1, batch_size=64)


def _members(arch: str):
    fn = lambda: build(arch)  # noqa: E731
    out = []
    for i, prune in enumerate([0.0, 0.3, 0.5]):
        model = init_model(fn, 100 + i)
        theta = {k: v.clone() for k, v in model.state_dict().items()}
        masks = lamp_masks(model, prune) if prune else None
        if masks:
            rewind(model, theta, masks)
        out.append(Member(state={k: v.clone() for k, v in model.state_dict().items()},
                          masks=masks, seed=7 + i))
    return fn, out


def _single(fn, m: Member, data, **kw):
    model = fn()
    model.load_state_dict(m.state)
    return train_stage(model, m.masks, data, CFG, seed=m.seed, device=CPU, **kw)


def test_population_equals_runs_one_by_one(tiny_data):
    fn, members = _members("lenet5")
    pops = train_population_stage(fn, members, tiny_data, CFG, device=CPU)
    for m, pop in zip(members, pops, strict=True):
        one = _single(fn, m, tiny_data)
        assert [h["val_acc"] for h in one.history] == [h["val_acc"] for h in pop.history]
        assert (one.best_epoch, one.epochs) == (pop.best_epoch, pop.epochs)
        # float noise (vmapped vs plain kernels) grows a little over epochs of SGD
        losses = [(h["train_loss"], g["train_loss"])
                  for h, g in zip(one.history, pop.history, strict=True)]
        assert all(abs(a - b) <= 1e-4 * abs(a) for a, b in losses), losses
        for k, v in one.state.items():
            torch.testing.assert_close(pop.state[k].float(), v.float(), atol=1e-3, rtol=1e-2)
        for n, mask in (m.masks or {}).items():
            assert torch.all(pop.state[n][~mask] == 0)


def test_population_with_batchnorm_equals_runs_one_by_one():
    """ResNet32 (BatchNorm, option-A shortcuts). Its early SGD is chaotic (a 1e-7 change of
    the weights grows to 1e-5 in one step at lr 0.05), so compare one epoch at a small lr."""
    from lth_core.data import load_data

    tiny_data = load_data("synthetic:240:60")  # 4 steps: ResNet32 is slow on a CPU
    fn, members = _members("resnet32")
    cfg = TrainConfig(lr=0.002, max_epochs=1, patience=1, batch_size=64)
    pops = train_population_stage(fn, members[:2], tiny_data, cfg, device=CPU)
    for m, pop in zip(members[:2], pops, strict=True):
        model = fn()
        model.load_state_dict(m.state)
        one = train_stage(model, m.masks, tiny_data, cfg, seed=m.seed, device=CPU)
        for k, v in one.state.items():  # BN running statistics included
            torch.testing.assert_close(pop.state[k].float(), v.float(), atol=1e-3, rtol=1e-2)
        assert abs(one.history[0]["val_acc"] - pop.history[0]["val_acc"]) <= 1.0


def test_members_stop_independently(tiny_data):
    fn, members = _members("lenet5")
    outs = train_population_stage(fn, members, tiny_data, CFG, device=CPU)
    assert all(o.epochs == len(o.history) for o in outs)
    assert all(o.epochs - o.best_epoch <= CFG.patience for o in outs)


def test_population_resumes_from_a_single_run_checkpoint(tiny_data):
    fn, members = _members("lenet5")
    states = []
    full = _single(fn, members[1], tiny_data, on_epoch=states.append)
    members[1].resume = states[0]
    (resumed,) = train_population_stage(fn, [members[1]], tiny_data, CFG, device=CPU)
    assert [h["val_acc"] for h in full.history] == [h["val_acc"] for h in resumed.history]


def test_population_batches_match_single_batches(tiny_data):
    from lth_core.data import batches

    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    pop = list(population_batches(tiny_data.train, 64, mean=tiny_data.mean, std=tiny_data.std,
                                  device=CPU, augment=True, generators=gens))
    for i, seed in enumerate((1, 2)):
        single = list(batches(tiny_data.train, 64, mean=tiny_data.mean, std=tiny_data.std,
                              device=CPU, shuffle=True, augment=True,
                              generator=torch.Generator().manual_seed(seed)))
        assert len(single) == len(pop)
        for (x, y), (px, py) in zip(single, pop, strict=True):
            assert torch.equal(x, px[i]) and torch.equal(y, py[i])
