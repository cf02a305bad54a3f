"""Architecture registry: exact sizes, shapes, blocks() == forward, and vmap-ability."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from lth_core.models import (
    ARCHITECTURES,
    PARAM_COUNTS,
    WIDTH_FAMILY,
    WIDTH_PARAM_COUNTS,
    build,
    count_parameters,
    is_buildable,
    parse_width,
)
from lth_core.models.lenet import LeNet5

NAMES = list(ARCHITECTURES)
WIDTH_NAMES = list(WIDTH_FAMILY)


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


# --- LeNet-5 width family ---------------------------------------------------------------------


class _PaperLeNet5(nn.Module):
    """LeNet-5 as written before the width parameter existed: the bit-for-bit reference."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(120, 84), nn.ReLU())
        self.fc3 = nn.Linear(84, 10)


def test_width_family_registry() -> None:
    assert list(WIDTH_FAMILY.items()) == [
        ("lenet5-w0.125", 0.125), ("lenet5-w0.25", 0.25), ("lenet5-w0.5", 0.5),
        ("lenet5", 1.0), ("lenet5-w2", 2.0),
    ]
    assert list(WIDTH_PARAM_COUNTS) == WIDTH_NAMES
    assert WIDTH_PARAM_COUNTS["lenet5"] == PARAM_COUNTS["lenet5"]
    assert list(ARCHITECTURES)[0] == "lenet5" and len(ARCHITECTURES) == 7  # family not mixed in
    counts = list(WIDTH_PARAM_COUNTS.values())
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert counts[-1] >= 30 * counts[0]


@pytest.mark.parametrize("name", WIDTH_NAMES)
def test_width_exact_parameter_count(name: str) -> None:
    model = build(name)
    assert isinstance(model, LeNet5) and model.width == WIDTH_FAMILY[name]
    assert count_parameters(model) == WIDTH_PARAM_COUNTS[name]
    assert count_parameters(LeNet5(width=WIDTH_FAMILY[name])) == WIDTH_PARAM_COUNTS[name]


@pytest.mark.parametrize("name", WIDTH_NAMES)
def test_width_output_shape_and_blocks(name: str) -> None:
    model = build(name).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 10)
        for _, block in model.blocks():
            x = block(x)
        torch.testing.assert_close(x, out, rtol=0, atol=0)


@pytest.mark.parametrize("make", [lambda: LeNet5(), lambda: LeNet5(width=1.0),
                                  lambda: build("lenet5"), lambda: build("lenet5-w1")])
def test_width_one_is_the_paper_lenet5_bit_for_bit(make) -> None:
    torch.manual_seed(123)
    reference = _PaperLeNet5().state_dict()
    torch.manual_seed(123)
    state = make().state_dict()
    assert list(state) == list(reference)
    for key, tensor in reference.items():
        assert state[key].shape == tensor.shape and torch.equal(state[key], tensor), key


def test_width_rounds_channels_half_up_and_at_least_one() -> None:
    def shape(width: float) -> tuple[int, ...]:
        m = LeNet5(width=width)
        return (m.conv1[0].out_channels, m.conv2[0].out_channels,
                m.fc1[1].out_features, m.fc2[0].out_features)

    assert shape(0.25) == (2, 4, 30, 21)  # 6 * 0.25 = 1.5 rounds up
    assert shape(0.125) == (1, 2, 15, 11)  # 84 * 0.125 = 10.5 rounds up
    assert shape(2) == (12, 32, 240, 168)
    assert shape(0.001) == (1, 1, 1, 1)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="width"):
            LeNet5(width=bad)


def test_width_names_parse() -> None:
    for name, width in WIDTH_FAMILY.items():
        assert parse_width(name) == width
    assert parse_width("lenet5-w1") == 1.0 and parse_width("lenet5-w0.50") == 0.5
    assert parse_width("lenet5-w0.00001") == 1e-5 and is_buildable("lenet5-w1.5")
    assert all(is_buildable(n) for n in NAMES)


@pytest.mark.parametrize(
    "name", ["lenet5-wx", "lenet5-w", "lenet5-w0", "lenet5-w-1", "lenet5-w1e-3", "lenet5-wnan",
             "lenet5-w.5", "lenet5w0.5", "lenet5-w0.5 ", "resnet18-w2"],
)
def test_bad_width_name_is_a_clear_one_line_error(name: str) -> None:
    assert not is_buildable(name)
    with pytest.raises(ValueError) as info:
        build(name)
    message = str(info.value)
    assert "\n" not in message and repr(name) in message
    assert all(n in message for n in NAMES) and "lenet5-w<width>" in message
