"""The trajectory-length scale investigation (a deviation of the expressivity chapter)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lth_book import trajectory_scale as ts
from lth_core.analysis.trajectory import mean_trajectory_lengths


def test_unit_arcs_are_orthonormal_and_seeded():
    pairs = ts.unit_pairs((3, 4, 4), 5, seed=7)
    assert pairs.shape == (5, 2, 3, 4, 4)
    flat = pairs.reshape(5, 2, -1).double()
    gram = flat @ flat.transpose(1, 2)
    torch.testing.assert_close(gram, torch.eye(2, dtype=torch.float64).expand(5, 2, 2),
                               atol=1e-5, rtol=0)
    assert torch.equal(pairs, ts.unit_pairs((3, 4, 4), 5, seed=7))
    assert not torch.equal(pairs, ts.unit_pairs((3, 4, 4), 5, seed=8))


def test_measure_matches_the_library_and_bounds_softmax():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 10))
    images = torch.randn(2, 2, 3, 2, 2)
    lengths = ts.measure(model, {"images": images}, n_points=64)
    ours = mean_trajectory_lengths(model, images, n_points=64)
    assert lengths["images/logits/full"] == pytest.approx(ours["traj_len"], rel=1e-12)
    assert lengths["images/logits/2d"] == pytest.approx(ours["traj_len_2d"], rel=1e-12)
    # a projection never lengthens a curve; softmax outputs live in the unit simplex
    assert lengths["images/logits/2d"] <= lengths["images/logits/full"] + 1e-9
    assert lengths["images/softmax/2d"] <= lengths["images/softmax/full"] + 1e-9
    scaled = torch.nn.Sequential(*model, torch.nn.Identity())
    with torch.no_grad():
        scaled[3].weight.mul_(3.0), scaled[3].bias.mul_(3.0)
    triple = ts.measure(scaled, {"images": images}, n_points=64)  # logits x 3: length x 3
    assert triple["images/logits/full"] == pytest.approx(3 * lengths["images/logits/full"])


def test_compute_writes_every_definition_and_the_chapter_reads_it(tmp_path):
    out = tmp_path / "lengths.json"
    record = ts.compute(out, "synthetic:60:40", resnet_epochs=1, lenet_epochs=1, n_pairs=1,
                        n_points=16, log=lambda m: None)
    assert json.loads(out.read_text()) == record == ts.load(out)
    keys = {ts.key(*d) for d in ts._definitions()}
    assert len(keys) == 12
    for arch in ("lenet5", "resnet32"):
        dense = record["models"][arch]["dense"]
        assert set(dense["final"]) == keys and set(dense["by_epoch"]["0"]) == keys
        assert all(np.isfinite(v) and v > 0 for v in dense["final"].values())
    assert set(record["models"]["lenet5"]["stage1"]["final"]) == keys
    table = ts.scale_table(record)
    assert len(table) == 24 and table["ours"].sum() == 1
    assert (table["worst_factor"] >= 1).all()
    shown = ts.display_table(record)
    assert len(shown) == 13 and shown["definition"].iloc[0].startswith("the paper")
    assert "535 times apart" in ts.scale_paragraph(record)
    assert ts.load(tmp_path / "missing.json") is None
    # one network recomputed, the other's entry kept as stored
    again = ts.compute(out, "synthetic:60:40", lenet_epochs=1, n_pairs=1, n_points=16,
                       archs=("lenet5",), log=lambda m: None)
    kept = dict(again["models"]["resnet32"])
    assert kept.pop("provenance") == record["provenance"]
    assert kept == {k: v for k, v in record["models"]["resnet32"].items() if k != "provenance"}
    assert set(again["models"]["lenet5"]["stage1"]["by_epoch"]["0"]) == keys  # rewound, untrained
    assert "before any training" in ts.scale_paragraph(again)
