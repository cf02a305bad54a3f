"""``lth`` command line: ``lth search`` runs (or resumes) ticket search, ``lth ticket``
exports a run's ticket as a model, ``lth report`` prints Table 2 of the paper from stored
results. Bad input gives one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
import warnings
import zlib
from collections.abc import Sequence
from typing import Any

from lth_core.config import (
    RESULTS,
    ConfigError,
    SearchConfig,
    TrainConfig,
    default_train_config,
)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SystemExit(_fail(f"{self.prog}: {message}"))


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _typed(kind: type) -> Any:
    """An argparse type: ``kind`` of the text, or one line saying what it is not; ranges
    are the configs' to check (``ConfigError``)."""
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    parse.__name__ = kind.__name__
    return parse


def _positive_int(text: str) -> int:
    value = _typed(int)(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_config_flags(parser: argparse.ArgumentParser, cls: type, title: str,
                     defaults: bool = True) -> None:
    """One flag per field of the dataclass config ``cls`` (``--max-epochs``), with its help,
    type and choices; nested configs (``SearchConfig.train``) get their own group.
    ``defaults``: the dataclass's defaults (shown in the help); else None, so an unset flag
    keeps what the caller fills in (an architecture's recipe)."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            add_config_flags(parser, kind, f"{title}: {f.name} (default: the "
                             "architecture's recipe)", defaults=False)
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if defaults else None
        text = f.metadata.get("help", "") + (f" (default: {default})" if defaults else "")
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                               help=text)
            continue
        choices = f.metadata.get("choices")
        group.add_argument(flag, type=kind if choices else _typed(kind), default=default,
                           choices=choices() if choices else None, help=text,
                           metavar=None if choices else f.name.upper())


def configs_from_args(args: argparse.Namespace, arch: str) -> Any:
    """The ``SearchConfig`` the flags ask for: ``arch``'s recipe where a training flag is
    unset. Raises ConfigError naming the field."""
    train = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name) is not None}
    search = {f.name: getattr(args, f.name) for f in dataclasses.fields(SearchConfig)
              if f.name != "train"}
    return SearchConfig(**search, train=default_train_config(arch, **train))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lth", description=__doc__, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("search", help="run or resume ticket search", allow_abbrev=False)
    s.add_argument("--arch", action="append", required=True,
                   help="architecture (repeatable): lenet5, pnasnet_a, ..., resnet18")
    s.add_argument("--runs", type=_positive_int, default=1)
    s.add_argument("--first-run", type=_typed(int), default=0, help="index of the first run")
    s.add_argument("--data", default="cifar10",
                   help="cifar10 | synthetic | path to a CIFAR-10 root, image folder or .tar.gz")
    s.add_argument("--results", default=RESULTS)
    s.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    s.add_argument("--population", type=_positive_int, default=None,
                   help="runs trained at once as one vectorised model (default: from the "
                        "device's memory; 1 trains runs one by one)")
    s.add_argument("--workers", type=_positive_int, default=None,
                   help="CPU only: train the runs in this many processes, one torch thread "
                        "each (one run per core is the fastest way to use a CPU)")
    s.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="train on Ray, one task per stage: alone, Ray starts on this machine "
                        "(or joins RAY_ADDRESS); with ADDRESS, join that cluster")
    s.add_argument("--keep-weights", choices=["none", "best", "all"], default="none",
                   help="also store trained weights: each run's Best Sparse and Sparsest "
                        "Matching tickets (best) or every stage's (all); for lth ticket")
    s.add_argument("--no-progress", action="store_true")
    add_config_flags(s, SearchConfig, "ticket search")

    t = sub.add_parser("ticket", help="export a run's ticket as a model", allow_abbrev=False)
    t.add_argument("--results", default=RESULTS)
    t.add_argument("--arch", required=True, help="the search's name (an architecture)")
    t.add_argument("--run", type=_typed(int), required=True)
    t.add_argument("--stage", default="best",
                   help="best (Best Sparse), sparsest (Sparsest Matching) or a stage number")
    t.add_argument("--out", required=True, help="file to write")
    t.add_argument("--format", choices=["state_dict", "prune", "onnx"], default="state_dict",
                   help="state_dict: {'state_dict', 'masks'}; prune: the model with "
                        "torch.nn.utils.prune masks (torch.load(..., weights_only=False)); "
                        "onnx: needs the onnx package")
    t.add_argument("--select-on", choices=["test", "val"], default="test",
                   help="the accuracy that chooses best and sparsest (as lth report)")
    t.add_argument("--data", default=None,
                   help="data to retrain the stage on when its weights were not kept")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")

    r = sub.add_parser("report", help="print Table 2 from stored results", allow_abbrev=False)
    r.add_argument("--results", default=RESULTS)
    r.add_argument("--format", choices=["table", "csv", "json"], default="table")
    r.add_argument("--select-on", choices=["test", "val"], default="test")
    r.add_argument("--stages", type=_positive_int, default=None,
                   help="K: a run counts only with all K stages (default: the K each "
                        "search declares, else the largest in its records)")
    return parser


def _search(args: argparse.Namespace) -> int:
    """``lth search``: every input is checked (architectures, configs, results path, data,
    each folder's setup) before anything trains; a bad one is one line and exit code 2."""
    import functools

    from lth_core.data import DataSpecError, load_data
    from lth_core.engine.search import run_search
    from lth_core.engine.workers import WorkerError
    from lth_core.models import build, check_arch
    from lth_core.store import ResultsStore, StoreError

    try:  # every config is checked before the results folder or the data is touched
        for arch in args.arch:
            check_arch(arch)
        if args.first_run < 0:
            return _fail("--first-run must be >= 0")
        configs = {arch: configs_from_args(args, arch) for arch in args.arch}
        ResultsStore(args.results)  # fail on a bad results path before loading any data
        data = load_data(args.data)
    except ConfigError as err:
        flag = f"argument --{err.field.replace('_', '-')}: " if err.field else ""
        return _fail(f"{flag}{err}")
    except (DataSpecError, StoreError, ValueError) as err:
        return _fail(str(err))

    failed = 0
    for arch, cfg in configs.items():
        try:
            report = run_search(functools.partial(build, arch), data, cfg, name=arch,
                                runs=range(args.first_run, args.first_run + args.runs),
                                results=args.results, device=args.device,
                                population=args.population, workers=args.workers,
                                ray=args.ray, keep_weights=args.keep_weights,
                                progress=not args.no_progress)
        except WorkerError as err:
            print(f"error: {arch}: {err}", file=sys.stderr)
            failed += 1
            continue
        except (StoreError, ValueError) as err:
            return _fail(str(err))
        failed += len(report.failed)
        if report.skipped_locked:
            print(f"{arch}: runs {report.skipped_locked} are being computed by another process",
                  file=sys.stderr)
    print(f"results in {args.results}", file=sys.stderr)
    return 1 if failed else 0


def _ticket(args: argparse.Namespace) -> int:
    """``lth ticket``: a stored stage's model, written in one of three forms; its density and
    its record's accuracies on stdout."""
    from lth_core.data import DataSpecError, load_data
    from lth_core.pruning import density
    from lth_core.store import StoreError
    from lth_core.ticket import export_ticket, load_ticket

    stage: str | int = args.stage
    if isinstance(stage, str) and stage.isdigit():
        stage = int(stage)
    try:
        data = load_data(args.data) if args.data else None
        model, masks, rec = load_ticket(args.results, args.arch, args.run, stage, data=data,
                                        device=args.device, select_on=args.select_on)
        export_ticket(model, masks, args.out, args.format)
    except (DataSpecError, StoreError, ValueError) as err:
        return _fail(str(err))
    print(f"{args.arch} run {args.run} stage {rec['stage']}: density {density(masks):.4f}, "
          f"test accuracy {rec['test_acc']:.2f} %, validation {rec['val_acc']:.2f} % "
          f"(its record); written to {args.out} ({args.format})")
    return 0


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
        return {"search": _search, "ticket": _ticket, "report": _report}[args.command](args)
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
