"""The ``circuitsim`` command line.

``circuitsim validate`` cross-checks circuitsim against ngspice on the built-in suite
(:func:`circuitsim.validation.suite.builtin_cases`) and on any tile given by options or a JSON
config file, prints one row per case and exits with status 0 when every case agrees, 1 when any
case disagrees or fails, and 2 for a usage error or when ngspice is missing. ``circuitsim irdrop``
runs the IR-drop study (:mod:`circuitsim.study`); ``circuitsim evaluate`` a network on mapped
tiles (:mod:`circuitsim.layers.cli`); ``circuitsim study`` writes, runs, shows and plots sweep
studies (:mod:`circuitsim.studies.cli`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]

#: Options of ``validate`` that describe a user tile, with their types.
_TILE_OPTIONS = {
    "rows": int,
    "cols": int,
    "r_wl": float,
    "r_bl": float,
    "r_source": float,
    "r_sense": float,
    "v_sense": float,
    "g_min": float,
    "g_max": float,
    "v_min": float,
    "v_max": float,
    "a": float,
    "a_neg": float,
    "k_neg": float,
    "v_gate": float,
    "vto": float,
    "kp": float,
    "lambda": float,
    "w": float,
    "l": float,
    "seed": int,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="circuitsim", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    val = sub.add_parser(
        "validate",
        help="cross-check circuitsim against ngspice",
        description="Cross-check circuitsim against ngspice on the built-in suite and on user "
        "tiles. Exit status: 0 all agree, 1 a case disagrees or fails, 2 usage error or no "
        "ngspice.",
    )
    val.add_argument(
        "--config",
        type=Path,
        action="append",
        default=[],
        help='JSON file: one tile spec, a list of specs, or {"cases": [...]} '
        "(keys as the tile options below, plus name, g, v_in)",
    )
    val.add_argument("--no-builtin", action="store_true", help="skip the built-in suite")
    val.add_argument("--only", default=None, help="run only cases whose name contains this")
    val.add_argument("--write-decks", type=Path, metavar="DIR", help="write each case's deck here")
    val.add_argument(
        "--backend",
        choices=("auto", "shared", "cli"),
        default="auto",
        help="ngspice through PySpice's shared library, the command line, or auto",
    )
    val.add_argument("--timeout", type=float, default=120.0, help="seconds per ngspice run")
    tile = val.add_argument_group("user tile (any of these adds one case)")
    for name, kind in _TILE_OPTIONS.items():
        tile.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None)
    tile.add_argument("--device", choices=("linear", "sinh", "asym-sinh", "stanford-pku"))
    tile.add_argument("--access", choices=("none", "level1"))
    tile.add_argument("--drive", choices=("left", "both"))
    tile.add_argument("--name", default=None, help="name of the user case")
    evaluate = sub.add_parser("evaluate", help="accuracy of a network on solved tiles "
                              "(circuitsim.layers.cli)", add_help=False)
    evaluate.add_argument("rest", nargs=argparse.REMAINDER)
    irdrop = sub.add_parser("irdrop", help="IR-drop study (circuitsim.study)", add_help=False)
    irdrop.add_argument("rest", nargs=argparse.REMAINDER)
    study = sub.add_parser("study", help="sweep studies: init, run, show, plot "
                           "(circuitsim.studies)", add_help=False)
    study.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _check_options(spec: dict) -> None:
    """Options that do not apply to the command-line tile are errors, named as options."""
    from circuitsim.validation.suite import _ACCESS_KEYS, _DEVICE_KEYS

    device = spec.get("device", "linear")
    for key, devices in _DEVICE_KEYS.items():
        if key in spec and device not in devices:
            raise ValueError(f"{_option(key)} applies only with --device "
                             f"{' or '.join(devices)}" + (f", not {device}" if "device" in spec
                                                          else ""))
    if spec.get("access", "none") != "level1":
        given = [_option(k) for k in _ACCESS_KEYS if k in spec]
        if given:
            raise ValueError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} only "
                             "with --access level1")


def _user_specs(args) -> list[dict]:
    from circuitsim.validation.suite import check_spec

    keys = [*_TILE_OPTIONS, "device", "access", "drive", "name"]
    spec = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    _check_options(spec)
    specs = [spec] if set(spec) - {"name"} else []
    for path in args.config:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
        if isinstance(data, dict) and "cases" in data:
            if set(data) != {"cases"}:
                extra = sorted(set(data) - {"cases"})
                raise ValueError(f"{path}: beside 'cases' no other key is allowed, got {extra}")
            data = data["cases"]
            if not isinstance(data, list):
                raise ValueError(f"{path}: 'cases' must be a list of case objects, got "
                                 f"{type(data).__name__}")
        elif isinstance(data, dict):
            data = [data]
        elif not isinstance(data, list):
            raise ValueError(f'{path}: expected a case object, a list of them, or {{"cases": '
                             f"[...]}}, got {type(data).__name__} {data!r}")
        for k, case in enumerate(data):
            check_spec(case, f"{path}: case {k}")
            specs.append(dict(case, name=case.get("name", f"{path.stem}-{k}")))
    return specs


def _check_decks_dir(path: Path) -> None:
    """The deck directory must exist or be creatable, and be writable."""
    import tempfile

    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path):
        pass


def _table(outcomes) -> str:
    rows = [("case", "size", "rel err V", "rel err I", "ngspice s", "circuitsim s", "result")]
    for o in outcomes:
        r = o.report
        nums = (
            (f"{r.v_rel:.1e}", f"{r.i_rel:.1e}", f"{r.ngspice_s:.3f}", f"{r.circuitsim_s:.3f}")
            if r is not None
            else ("-", "-", "-", "-")
        )
        rows.append(
            (
                o.case.name,
                o.case.size,
                *nums,
                "PASS" if o.passed else f"FAIL ({o.status})" if o.status != "FAIL" else "FAIL",
            )
        )
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def validate(args) -> int:
    """Run ``circuitsim validate``; returns the exit status."""
    from circuitsim.validation.suite import builtin_cases, case_from_spec, run_cases

    try:
        if not args.timeout > 0:
            raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout:g}")
        if args.write_decks is not None:
            try:
                _check_decks_dir(args.write_decks)
            except OSError as exc:
                raise ValueError(f"--write-decks {args.write_decks}: cannot write decks there "
                                 f"({exc.strerror or exc})") from None
        cases = [] if args.no_builtin else builtin_cases()
        cases += [case_from_spec(s) for s in _user_specs(args)]
    except (OSError, ValueError, TypeError) as exc:
        print(f"circuitsim validate: {exc}", file=sys.stderr)
        return 2
    if args.only:
        cases = [c for c in cases if args.only in c.name]
    if not cases:
        print("circuitsim validate: no cases to run", file=sys.stderr)
        return 2
    outcomes = run_cases(cases, backend=args.backend, timeout=args.timeout, decks=args.write_decks)
    print(_table(outcomes))
    for o in outcomes:
        if not o.passed:
            print(f"{o.case.name}: {o.status}: {o.message}")
    reports = [o.report for o in outcomes if o.report is not None]
    passed = sum(o.passed for o in outcomes)
    line = f"{len(outcomes)} cases: {passed} passed, {len(outcomes) - passed} failed"
    if reports:
        line += (
            f"; ngspice {sum(r.ngspice_s for r in reports):.2f} s "
            f"({reports[0].backend}, ngspice {reports[0].version}), "
            f"circuitsim {sum(r.circuitsim_s for r in reports):.2f} s"
        )
    print(line)
    if args.write_decks:
        print(f"decks written to {args.write_decks}")
    if any(o.status == "MISSING" for o in outcomes):
        return 2
    return 0 if passed == len(outcomes) else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``circuitsim`` command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["evaluate"]:
        from circuitsim.layers.cli import main as evaluate_main

        return evaluate_main(argv[1:])
    if argv[:1] == ["irdrop"]:
        from circuitsim.study import irdrop_main

        return irdrop_main(argv[1:])
    if argv[:1] == ["study"]:
        from circuitsim.studies.cli import main as study_main

        return study_main(argv[1:])
    args = _parser().parse_args(argv)
    return validate(args)
