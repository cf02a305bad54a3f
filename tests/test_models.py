"""Architecture registry: exact sizes, shapes, blocks() == forward, and vmap-ability."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from lth_core.models import ARCHITECTURES, PARAM_COUNTS, build, count_parameters

NAMES = list(ARCHITECTURES)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_registry_order_and_names() -> None:
    assert NAMES == [
        "lenet5", "pnasnet_a", "pnasnet_b", "resnet32",
        "mobilenet_v1", "efficientnet_b0", "resnet18",
    ]
    counts = [PARAM_COUNTS[n] for n in NAMES]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


@pytest.mark.parametrize("name", NAMES)
def test_exact_parameter_count(name: str) -> None:
    assert count_parameters(build(name)) == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", NAMES)
def test_output_shape(name: str) -> None:
    model = build(name).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["lenet5", "resnet32", "efficientnet_b0"])
def test_num_classes(name: str) -> None:
    model = build(name, num_classes=100).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


@pytest.mark.parametrize("name", NAMES)
def test_blocks_reproduce_forward(name: str) -> None:
    model = build(name).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = x
        for _, block in model.blocks():
            out = block(out)
        torch.testing.assert_close(out, model(x), rtol=0, atol=0)
    # The blocks must hold every parameter, so nothing is computed outside them.
    in_blocks = {id(p) for _, b in model.blocks() for p in b.parameters()}
    assert in_blocks == {id(p) for p in model.parameters()}
    names = [n for n, _ in model.blocks()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", NAMES)
def test_only_prunable_layer_types_hold_weights(name: str) -> None:
    for module in build(name).modules():
        if list(module.parameters(recurse=False)):
            assert isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)), type(module)


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ValueError, match="nope") as info:
        build("nope")
    message = str(info.value)
    assert "\n" not in message
    assert all(n in message for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_population_train_step(name: str) -> None:
    """Two stacked copies, BatchNorm in train mode, forward + backward under vmap."""
    models = [build(name).train() for _ in range(2)]
    params, buffers = stack_module_state(models)
    base = build(name).to("meta").train()
    x = torch.randn(2, 4, 3, 32, 32)
    y = torch.randint(0, 10, (2, 4))

    def loss_fn(p: dict, b: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(base, (p, b), (xi,))
        return nn.functional.cross_entropy(logits, yi)

    losses = vmap(loss_fn, in_dims=(0, 0, 0, 0), randomness="different")(params, buffers, x, y)
    assert losses.shape == (2,) and torch.isfinite(losses).all()
    losses.sum().backward()
    for key, p in params.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key
        assert p.grad[0].abs().sum() > 0 or p.grad[1].abs().sum() > 0, key
    # Running statistics were updated in place, separately for each copy.
    for key, buf in buffers.items():
        if key.endswith("num_batches_tracked"):
            assert (buf == 1).all(), key
        elif key.endswith("running_mean"):
            assert buf.abs().sum() > 0, key
            assert not torch.equal(buf[0], buf[1]), key
