"""The book shows the largest stored budget of the same setup, and the reader's run beside it."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from conftest import tiny_config

from lth_book.sources import best_available, find_result_sets, is_synthetic, largest_dense_set
from lth_core import build, load_results, ticket_search

CFG = tiny_config(stages=2)


@pytest.fixture(scope="module")
def stored(tmp_path_factory, tiny_data):
    """A reader's 2-run search and, elsewhere in the results tree, a 3-run one of the same
    setup (``gpu/``), a 4-run one of another recipe (``other/``) and a dense-only one."""
    root = tmp_path_factory.mktemp("results")
    own = root / "own"
    ticket_search(lambda: build("lenet5"), tiny_data, CFG, name="lenet5", runs=2,
                  results=own, progress=False)
    shutil.copytree(own, root / "gpu")
    ticket_search(lambda: build("lenet5"), tiny_data, CFG, name="lenet5", runs=3,
                  results=root / "gpu", progress=False)
    other = tiny_config(stages=2, prune_rate=0.3)
    ticket_search(lambda: build("lenet5"), tiny_data, other, name="lenet5", runs=4,
                  results=root / "other", progress=False)
    ticket_search(lambda: build("lenet5"), tiny_data, tiny_config(stages=1), name="lenet5",
                  runs=5, results=root / "dense", progress=False)
    return root


def test_finds_every_set_with_its_complete_runs(stored):
    sets = {s.root.name: s for s in find_result_sets(stored, "lenet5")}
    assert set(sets) == {"own", "gpu", "other", "dense"}
    assert sets["gpu"].complete_runs(2) == [0, 1, 2]
    assert sets["dense"].complete_runs(2) == [] and len(sets["dense"].runs) == 5
    assert all(s.synthetic for s in sets.values())


def test_synthetic_data_is_told_by_one_function(stored):
    assert is_synthetic("synthetic") and is_synthetic("synthetic:48:24")
    assert not is_synthetic("cifar10") and not is_synthetic("cifar10-jpeg")
    assert all(s.synthetic for s in find_result_sets(stored))


def test_result_sets_count_the_stages_the_store_reads(stored, tmp_path):
    """A corrupt record ends a run's stored stages where the store stops reading."""
    shutil.copytree(stored / "gpu", tmp_path / "gpu")
    (tmp_path / "gpu" / "lenet5" / "run-001" / "stage-1.json").write_text("{not json")
    with pytest.warns(UserWarning, match="corrupt"):
        (s,) = find_result_sets(tmp_path, "lenet5")
    assert s.runs == {0: 2, 1: 1, 2: 2} and s.complete_runs(2) == [0, 2]


def test_larger_same_setup_set_is_shown_and_labelled(stored):
    own = load_results(stored / "own")
    shown = best_available(own, {"lenet5": CFG}, own_root=stored / "own", stages=2,
                           search_root=stored)
    # "other" has more runs but another prune rate; "dense" has no pruned stage
    assert shown.preferred == ["lenet5"]
    assert sorted(shown.df["run"].unique()) == [0, 1, 2]
    assert shown.sources.loc[0, "shown_from"].endswith("gpu")
    assert shown.sources.loc[0, "your_runs"] == 2
    assert "larger budget" in shown.markdown() and "gpu" in shown.markdown()
    assert len(shown.own) == len(own)  # the reader's run stays available beside it
    assert shown.roots["lenet5"] == stored / "gpu"  # where its arcs are read from
    spread = shown.dense_spreads()  # "dense" has 5 dense runs, more than the 3 shown
    assert spread.loc["lenet5", "dense_runs"] == 5
    assert spread.loc["lenet5", "source"].endswith("dense")


def test_reader_run_is_kept_when_nothing_larger_or_when_asked(stored):
    own = load_results(stored / "gpu")
    shown = best_available(own, {"lenet5": CFG}, own_root=stored / "gpu", stages=2,
                           search_root=stored)
    assert shown.preferred == [] and shown.df.equals(own[own["stage"] < 2].reset_index(drop=True))
    own = load_results(stored / "own")
    kept = best_available(own, {"lenet5": CFG}, own_root=stored / "own", stages=2,
                          search_root=stored, prefer=False)
    assert kept.preferred == [] and kept.df["run"].nunique() == 2
    assert "your run" in kept.markdown()


def test_real_data_run_never_shows_synthetic_sets(stored):
    own = load_results(stored / "own").assign(data_name="cifar10-jpeg")
    shown = best_available(own, {"lenet5": CFG}, own_root=stored / "own", stages=2,
                           search_root=stored)
    assert shown.preferred == []


def test_dense_spread_comes_from_the_set_with_most_dense_runs(stored):
    root, dense = largest_dense_set("lenet5", tiny_config(stages=1), search_root=stored,
                                    synthetic=True)
    # "dense" (5 runs) beats "gpu" (3); "other" (4) has another prune rate
    assert root.name == "dense" and len(dense) == 5 and (dense["stage"] == 0).all()
    assert largest_dense_set("lenet5", CFG, search_root=stored) is None  # no real-data set


def test_more_runs_in_the_readers_own_folder_are_shown(stored, tmp_path):
    shutil.copytree(stored / "gpu", tmp_path / "r")
    own = load_results(tmp_path / "r")
    own = own[own["run"] < 2]  # the profile asks for 2 runs; the folder holds 3
    shown = best_available(own, {"lenet5": CFG}, own_root=tmp_path / "r", stages=2,
                           search_root=tmp_path)
    assert shown.preferred == ["lenet5"] and shown.df["run"].nunique() == 3
    assert "all 3 complete runs stored in" in shown.markdown()


def test_provenance_table_keeps_the_dirty_mark_and_splits_pruners(stored):
    from lth_book.profiles import provenance_table

    df = load_results(stored / "own").assign(git_commit="0123456789abcdef0123+dirty")
    both = pd.concat([df, df.assign(pruner="random")], ignore_index=True)
    table = provenance_table(both)
    assert list(table["pruner"]) == ["lamp", "random"]
    assert (table["code commit"] == "0123456789ab+dirty").all()


def test_a_profile_refuses_a_complete_folder_of_another_setup(stored):
    from lth_book.profiles import ensure_results
    from lth_core.store import StoreError

    # "own" is complete for its 2 runs, but of the tiny recipe, not the smoke profile's
    with pytest.raises(StoreError, match=r"another setup \(arc_pairs: 2 there, 1 now\)"):
        ensure_results("smoke", results=stored / "own", archs=["lenet5"], runs=2, stages=2)
