"""``lth`` command line: ``lth search`` runs (or resumes) ticket search, ``lth report`` prints
Table 2 of the paper from stored results. Bad input gives one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
import zlib
from collections.abc import Sequence

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SystemExit(_fail(f"{self.prog}: {message}"))


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field, with the field's help; unset flags keep the
    architecture's recipe."""
    import dataclasses

    from lth_core.config import TrainConfig

    group = parser.add_argument_group("training (default: the architecture's recipe)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=f.metadata.get("help"))
        else:
            kind = {"int": int, "float": float}.get(f.type, f.type)
            group.add_argument(flag, type=kind, default=None, metavar=f.name.upper(),
                               help=f.metadata.get("help"))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lth", description=__doc__, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("search", help="run or resume ticket search", allow_abbrev=False)
    s.add_argument("--arch", action="append", required=True,
                   help="architecture (repeatable): lenet5, pnasnet_a, ..., resnet18")
    s.add_argument("--runs", type=_positive_int, default=1)
    s.add_argument("--first-run", type=int, default=0, help="index of the first run")
    s.add_argument("--stages", type=_positive_int, default=5, help="K, stages incl. dense")
    s.add_argument("--prune-rate", type=_unit_interval, default=0.16)
    s.add_argument("--pruner", choices=["lamp", "magnitude", "random"], default="lamp")
    _add_train_flags(s)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--data", default="cifar10",
                   help="cifar10 | synthetic | path to a CIFAR-10 root, image folder or .tar.gz")
    s.add_argument("--results", default="results")
    s.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    s.add_argument("--population", type=_positive_int, default=None,
                   help="runs trained at once as one vectorised model (default: from the "
                        "device's memory; 1 trains runs one by one)")
    s.add_argument("--workers", type=_positive_int, default=None,
                   help="CPU only: train the runs in this many processes, one torch thread "
                        "each (one run per core is the fastest way to use a CPU)")
    s.add_argument("--no-progress", action="store_true")
    from lth_core.engine.ray_search import add_ray_argument

    add_ray_argument(s)

    r = sub.add_parser("report", help="print Table 2 from stored results", allow_abbrev=False)
    r.add_argument("--results", default="results")
    r.add_argument("--format", choices=["table", "csv", "json"], default="table")
    r.add_argument("--select-on", choices=["test", "val"], default="test")
    r.add_argument("--stages", type=_positive_int, default=None,
                   help="K: a run counts only with all K stages (default: the K each "
                        "search declares, else the largest in its records)")
    return parser


def _search(args: argparse.Namespace) -> int:
    """``lth search``: every input is checked (architectures, configs, results path, data,
    each folder's setup) before anything trains; a bad one is one line and exit code 2."""
    import dataclasses

    from lth_core.config import SearchConfig, TrainConfig, default_train_config
    from lth_core.data import DataSpecError, load_data
    from lth_core.engine.search import prepare_search, search_runs
    from lth_core.engine.train import resolve_device
    from lth_core.engine.workers import WorkerError, search_in_workers
    from lth_core.models import build, check_arch
    from lth_core.store import ResultsStore, StoreError

    for arch in args.arch:
        try:
            check_arch(arch)
        except ValueError as err:
            return _fail(str(err))
    if args.first_run < 0:
        return _fail("--first-run must be >= 0")
    if args.workers and args.workers > 1 and args.population and args.population > 1:
        return _fail("--workers and --population exclude each other: choose one")
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if getattr(args, f.name) is not None}
    try:  # every config is checked before the results folder or the data is touched
        configs = {arch: SearchConfig(stages=args.stages, prune_rate=args.prune_rate,
                                      pruner=args.pruner, seed=args.seed,
                                      train=default_train_config(arch, **overrides))
                   for arch in args.arch}
        workers = args.workers and args.workers > 1
        if workers and resolve_device(args.device).type != "cpu":
            return _fail("--workers is for CPUs; on a GPU use --population")
        if args.ray is None:  # on Ray the cluster's devices count, not this machine's
            resolve_device(args.device)
        ResultsStore(args.results)  # fail on a bad results path before loading any data
        data = load_data(args.data)
    except (DataSpecError, StoreError, ValueError) as err:
        return _fail(str(err))

    failed = 0
    for arch, cfg in configs.items():
        runs = range(args.first_run, args.first_run + args.runs)
        model_fn = lambda arch=arch: build(arch)  # noqa: E731
        try:
            if args.ray is not None:
                from lth_core.engine.ray_search import run_ray_search

                failed += run_ray_search(args, cfg, arch, data=data)
                continue
            if workers:
                prepare_search(model_fn, data, cfg, arch, args.results)  # setup: here, once
                try:
                    search_in_workers(arch, args.data, cfg, runs=runs, results=args.results,
                                      workers=args.workers)
                except WorkerError as err:
                    if err.usage:
                        return _fail(str(err))
                    print(f"error: {err}", file=sys.stderr)
                    failed += 1
                continue
            report = search_runs(model_fn, data, cfg, name=arch, runs=runs,
                                 results=args.results, device=args.device,
                                 population=args.population, progress=not args.no_progress)
        except (StoreError, ValueError) as err:
            return _fail(str(err))
        failed += len(report.failed)
        if report.skipped_locked:
            print(f"{arch}: runs {report.skipped_locked} are being computed by another process",
                  file=sys.stderr)
    print(f"results in {args.results}", file=sys.stderr)
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    """Table 2 from the complete runs only; incomplete ones are counted and named per arch,
    since an unfinished run would otherwise count as a failed search."""
    from lth_core.analysis.metrics import complete_runs, format_table2, search_stages, table2
    from lth_core.models import ARCHITECTURES
    from lth_core.store import StoreError, declared_stages, load_results

    try:
        df = load_results(args.results)
    except StoreError as err:
        return _fail(str(err))
    if df.empty:
        return _fail(f"no results in {args.results}")
    declared = declared_stages(args.results)
    if args.stages is not None:
        declared = {arch: args.stages for arch in set(df["arch"])}
    stages = search_stages(df, declared)
    undeclared = sorted(set(df["arch"]) - set(declared))
    df, left_out = complete_runs(df, declared)
    notes = [f"{arch}: {n} incomplete run{'s' if n > 1 else ''} left out (fewer than "
             f"K = {stages[arch]} stages recorded)" for arch, n in left_out.items()]
    notes += [f"{arch}: K = {stages[arch]} read from the records (its search.json declares "
              "no K); --stages K sets it" for arch in undeclared]
    if df.empty:
        return _fail(f"no complete run in {args.results}; " + "; ".join(notes))
    order = [a for a in ARCHITECTURES if a in set(df["arch"])]
    order += sorted(set(df["arch"]) - set(order))
    t = table2(df, select_on=args.select_on, order=order)
    t.insert(1, "n_incomplete", [left_out.get(a, 0) for a in t.index])
    if args.format == "table":
        print("\n".join([format_table2(t), *notes]))
        return 0
    if args.format == "csv":
        print(t.reset_index().to_csv(index=False), end="")
    else:
        print(t.reset_index().to_json(orient="records", indent=1))
    for note in notes:  # stdout stays machine-readable; the column has the counts too
        print(f"note: {note}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The one error boundary of ``lth``: usage errors, a full disk or an unreadable file,
    damaged compressed data and Ctrl-C (also while importing) each end in one line."""
    warnings.simplefilter("default")
    warnings.showwarning = lambda msg, cat, *a, **k: print(f"warning: {msg}", file=sys.stderr)
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0)
        return _search(args) if args.command == "search" else _report(args)
    except KeyboardInterrupt:
        print("interrupted; finished stages are kept and the search resumes from its last "
              "checkpoint", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:  # a full disk, a folder that became unwritable, a vanished file
        where = f" ({err.filename})" if err.filename else ""
        return _fail(f"{err.strerror or err}{where}; finished stages are kept, rerun the "
                     "same command to continue")
    except zlib.error as err:
        return _fail(f"damaged compressed data: {err}")


if __name__ == "__main__":
    sys.exit(main())
