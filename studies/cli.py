"""``circuitsim study``: write, run, show and plot studies.

    circuitsim study init STUDY.toml            write the embedded default study (commented)
    circuitsim study run [STUDY.toml] -o results.h5 [--workers N | --dask-local N |
                         --scheduler tcp://host:port] [--resume | --overwrite] [--plots DIR]
    circuitsim study show results.h5 [--point NAME] [--verify]
    circuitsim study plot results.h5 -o figs/ [--point NAME] [--input K] [--x KEY] [--line KEY]

Exit status: 0 done (points that did not converge are results too: they are stored and listed
with their reason); 1 the study is incomplete (a write failed, or workers kept dying) or
``--verify`` found damage; 2 a usage error, a bad study file or an output that cannot be used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="circuitsim study", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="write the embedded default study file")
    init.add_argument("study", type=Path, help="the TOML file to write")
    init.add_argument("--force", action="store_true", help="replace an existing file")

    run = sub.add_parser("run", help="solve every point and store the results")
    run.add_argument("study", type=Path, nargs="?", default=None,
                     help="study file (default: the embedded default study)")
    run.add_argument("-o", "--output", type=Path, default=None,
                     help="results file (default: <study name>.h5)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="N local worker processes")
    where.add_argument("--dask-local", type=int, metavar="N",
                       help="a Dask LocalCluster of N workers on 127.0.0.1")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="a Dask scheduler: tcp://host:port, or tls://host:port with the "
                       "--tls options")
    run.add_argument("--tls-ca-file", type=Path, help="CA certificate for tls://")
    run.add_argument("--tls-cert", type=Path, help="client certificate for tls://")
    run.add_argument("--tls-key", type=Path, help="client private key for tls://")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="finish a study that stopped: compute only the missing points")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace an existing results file")
    run.add_argument("--plots", type=Path, metavar="DIR", help="also write the plots here")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    show = sub.add_parser("show", help="print the summary table of a results file")
    show.add_argument("results", type=Path)
    show.add_argument("--point", help="print one point's configuration, metrics and datasets")
    show.add_argument("--verify", action="store_true",
                      help="read every dataset and check its SHA-256")

    plot = sub.add_parser("plot", help="heatmaps, error curves and output currents")
    plot.add_argument("results", type=Path)
    plot.add_argument("-o", "--output", type=Path, required=True, help="folder for the figures")
    plot.add_argument("--point", help="point of the heatmaps (default: largest RMS error)")
    plot.add_argument("--input", type=int, default=0, help="input vector of the heatmaps")
    plot.add_argument("--x", help="swept key on the x axis of the error curves")
    plot.add_argument("--line", help="swept key that makes the lines of the error curves")
    plot.add_argument("--format", default="png,svg", help="comma-separated: png, svg, pdf")
    return p


def _init(args) -> int:
    from .config import default_study_text

    if args.study.exists() and not args.force:
        print(f"circuitsim study init: {str(args.study)!r} exists; --force replaces it",
              file=sys.stderr)
        return 2
    args.study.write_text(default_study_text())
    print(f"wrote {args.study}; run it with: circuitsim study run {args.study} -o results.h5")
    return 0


def _security(args):
    tls = (args.tls_ca_file, args.tls_cert, args.tls_key)
    if not any(tls):
        if args.scheduler and args.scheduler.startswith("tls://"):
            raise ValueError("tls:// needs --tls-ca-file, --tls-cert and --tls-key")
        return None
    if not all(tls) or not (args.scheduler or "").startswith("tls://"):
        raise ValueError("--tls-ca-file, --tls-cert and --tls-key go together, with "
                         "--scheduler tls://host:port")
    from distributed.security import Security

    return Security(tls_ca_file=str(args.tls_ca_file), tls_client_cert=str(args.tls_cert),
                    tls_client_key=str(args.tls_key), require_encryption=True)


def _run(args) -> int:
    from .config import default_study_text, load_study
    from .runner import run_study

    study = (load_study(args.study) if args.study is not None
             else load_study(text=default_study_text()))
    out = args.output or Path(f"{study.name}.h5")
    security = _security(args)
    n = len(study.points)
    print(f"study {study.name!r}: {n} points ({', '.join(study.sweep_keys) or 'no sweep'}) "
          f"-> {out}", flush=True)
    report = run_study(study, out, workers=args.workers, dask_local=args.dask_local,
                       scheduler=args.scheduler, security=security, resume=args.resume,
                       overwrite=args.overwrite, progress=not args.quiet)
    from .results import read_summary

    print(read_summary(out).text())
    print(f"{report.computed} points computed in {report.seconds:.1f} s"
          + (f", {report.skipped} already there" if report.skipped else "")
          + (f", {len(report.unconverged)} not converged or failed (listed above)"
             if report.unconverged else "")
          + f"; results: {out}" + (" (with its parts folder)" if report.layout == "index" else ""))
    if report.lost:
        for name, reason in sorted(report.lost.items()):
            print(f"{name}: not computed: {reason}", file=sys.stderr)
        print(f"circuitsim study run: {len(report.lost)} points could not be computed; run "
              "again with --resume to compute them", file=sys.stderr)
        return 1
    if args.plots:
        from .plots import plot_study

        files = plot_study(out, args.plots)
        print(f"plots: {', '.join(str(f) for f in files)}")
    return 0


def _show(args) -> int:
    from .results import read_point, read_summary, verify

    if args.point:
        p = read_point(args.results, args.point)
        print(f"{p.name}: {p.status}" + (f" ({p.reason})" if p.reason else ""))
        for k, v in sorted(p.attrs.items()):
            if k not in ("config", "units", "params", "reason"):
                unit = p.units.get(k, "")
                print(f"  {k} = {v}" + (f" {unit}" if unit not in ("", "1") else ""))
        for k, v in sorted(p.arrays.items()):
            print(f"  dataset {k}: {v.dtype} {v.shape} {p.units.get(k, '')}".rstrip())
    else:
        print(read_summary(args.results).text())
    if args.verify:
        problems = verify(args.results)
        for line in problems:
            print(f"damaged: {line}")
        print("verify: " + (f"{len(problems)} problems" if problems
                            else "every dataset matches its SHA-256"))
        return 1 if problems else 0
    return 0


def _plot(args) -> int:
    from .plots import plot_study

    files = plot_study(args.results, args.output, point=args.point, input=args.input, x=args.x,
                       line=args.line, formats=tuple(f for f in args.format.split(",") if f))
    for f in files:
        print(f)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``circuitsim study``; returns the exit status."""
    from .schema import StudyError
    from .store import OutputError, WriteError

    args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        return {"init": _init, "run": _run, "show": _show, "plot": _plot}[args.command](args)
    except WriteError as exc:
        print(f"circuitsim study {args.command}: {exc.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"circuitsim study {args.command}: interrupted; the points committed so far are "
              "kept (run again with --resume to finish)", file=sys.stderr)
        return 130
    except (StudyError, OutputError, ValueError, KeyError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"circuitsim study {args.command}: {msg}", file=sys.stderr)
        return 2
