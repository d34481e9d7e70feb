"""Mutation check: plant small bugs one at a time and see whether the test suite notices.

Each entry of ``mutants.json`` names a file, an exact piece of its text, the text to put in its
place and what the change breaks. The check copies the repository once to a temporary folder,
runs the unmodified suite there (it must pass), then for each entry substitutes the text, runs
the suite (``pytest -x -q``), restores the file and records the outcome:

- ``CAUGHT``: some test failed (or the suite could not even be collected);
- ``SURVIVED``: the whole suite passed with the bug in place;
- ``TIMEOUT``: the suite ran past the per-mutant limit (reported, not counted as caught);
- ``STALE``: the text is no longer in the file (the code moved: re-target the entry);
- ``AMBIGUOUS``: the text occurs more than once (make it longer);
- ``ERROR``: pytest itself failed to run (usage or internal error).

An entry may carry ``"equivalent"``: why it is believed to change nothing a test could see. It
still runs; if it survives, the table says so and the exit status does not count it.

Run it from the repository root with the project's environment; it is never collected by
pytest and does not run in CI::

    .venv/bin/python tests/mutation/run.py                     # all entries, then a table
    .venv/bin/python tests/mutation/run.py --list              # names and whether they apply
    .venv/bin/python tests/mutation/run.py --only newton-tol-x1e4 batch-never-shrinks
    .venv/bin/python tests/mutation/run.py --pytest-args "tests/test_linear.py -k invariants"

The copy's ``circuitsim`` packages are imported from the copy itself: an editable install of
the project would otherwise resolve ``circuitsim.netlist`` and friends to the original tree, so
the child interpreter drops the editable finder and maps the packages (from ``pyproject.toml``'s
``package-dir``) to the copy's folders. Hypothesis runs derandomized, without its example
database and without deadlines, so outcomes do not depend on earlier runs or on machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MUTANTS = HERE / "mutants.json"
FIELDS = ("name", "file", "find", "replace", "description")
IGNORE = (".git", ".venv", "venv", "__pycache__", ".hypothesis", ".pytest_cache", ".ruff_cache",
          "*.egg-info", "build", "dist", "decks")
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=mutation"]

# Run in the copy by the child interpreter: import the copy's packages, then run pytest.
BOOT = r"""
import importlib.util, os, re, sys
root = os.getcwd()
text = open(os.path.join(root, "pyproject.toml")).read()
line = text.split("package-dir", 1)[1].split("\n", 1)[0]
mapping = dict(re.findall(r'"(circuitsim(?:\.\w+)*)"\s*=\s*"([^"]+)"', line))
def _ours(entry):
    return not str(getattr(entry, "__module__", "")).startswith("__editable__")
sys.meta_path[:] = [f for f in sys.meta_path if _ours(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if _ours(h)]
sys.path_importer_cache.clear()
class TreeFinder:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname not in mapping:
            return None
        folder = os.path.join(root, mapping[fullname])
        return importlib.util.spec_from_file_location(
            fullname, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
sys.meta_path.insert(0, TreeFinder)
if sys.argv[1:] == ["--probe"]:
    import importlib
    for name in sorted(mapping):
        print(name, importlib.import_module(name).__file__)
    sys.exit(0)
try:
    from hypothesis import settings
    settings.register_profile("mutation", database=None, derandomize=True, deadline=None)
except ImportError:
    pass
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


@dataclass
class Outcome:
    name: str
    file: str
    result: str
    seconds: float = 0.0
    detail: str = ""


def load(path: Path = MUTANTS) -> list[dict]:
    """The entries of a mutant list; each has the fields of ``FIELDS`` and a unique name."""
    entries = json.loads(Path(path).read_text())
    names = set()
    for k, entry in enumerate(entries):
        missing = [f for f in FIELDS if not isinstance(entry.get(f), str) or not entry[f]]
        if missing and missing != ["replace"]:  # an empty replacement deletes the text
            raise ValueError(f"{path}: entry {k} lacks {', '.join(missing)}")
        if entry["name"] in names:
            raise ValueError(f"{path}: duplicate entry name {entry['name']!r}")
        if entry["find"] == entry["replace"]:
            raise ValueError(f"{path}: entry {entry['name']!r} replaces its text by itself")
        names.add(entry["name"])
    return entries


def applicability(entry: dict, root: Path) -> str:
    """``"ok"``, ``"STALE"`` (file or text gone) or ``"AMBIGUOUS"`` (text found more than once)."""
    path = root / entry["file"]
    if not path.is_file():
        return "STALE"
    count = path.read_text().count(entry["find"])
    return "ok" if count == 1 else ("STALE" if count == 0 else "AMBIGUOUS")


def classify(returncode: int | None, timed_out: bool) -> str:
    """The outcome of a suite run with a planted bug, from pytest's exit status."""
    if timed_out:
        return "TIMEOUT"
    if returncode == 0:
        return "SURVIVED"
    if returncode in (1, 2):  # tests failed; collection failed (the bug breaks an import)
        return "CAUGHT"
    return "ERROR"


def first_failure(output: str) -> str:
    """The first failing test named in pytest's short summary, or pytest's last line."""
    found = re.search(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", output, flags=re.MULTILINE)
    if found:
        return found.group(1)
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    return lines[-1][:120] if lines else ""


def run_suite(tree: Path, args: list[str], timeout: float) -> tuple[int | None, bool, float, str]:
    """Run pytest in ``tree``; returns (exit status, timed out, seconds, output)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0")
    env.pop("PYTHONPATH", None)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", BOOT, *args], cwd=tree, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole session: pytest and any ngspice child
        out, _ = proc.communicate()
        timed_out = True
    return proc.returncode, timed_out, time.perf_counter() - start, out


def copy_tree(root: Path, dest: Path) -> Path:
    tree = dest / "tree"
    shutil.copytree(root, tree, ignore=shutil.ignore_patterns(*IGNORE), symlinks=True)
    return tree


def probe(tree: Path) -> None:
    """Check that the child interpreter imports the copy's packages, not the original's."""
    rc, _, _, out = run_suite(tree, ["--probe"], 120)
    files = dict(line.split(" ", 1) for line in out.strip().splitlines() if " " in line)
    if rc != 0 or not files or not all(Path(f).resolve().is_relative_to(tree.resolve())
                                       for f in files.values()):
        raise SystemExit(f"mutation check: the copy's packages are not the ones imported:\n{out}")


def table(outcomes: list[Outcome]) -> str:
    rows = [("mutant", "file", "result", "s", "caught by / note")]
    rows += [(o.name, o.file, o.result, f"{o.seconds:.0f}" if o.seconds else "", o.detail)
             for o in outcomes]
    widths = [max(len(r[k]) for r in rows) for k in range(4)]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 16)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these entries only")
    parser.add_argument("--list", action="store_true", help="list the entries and exit")
    parser.add_argument("--mutants", type=Path, default=MUTANTS, help="the list of entries")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per mutant (default: 3x the baseline run, at least 120)")
    parser.add_argument("--pytest-args", default="", help="extra arguments for pytest, quoted")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the run of the unmodified suite")
    opts = parser.parse_args(argv)
    entries = load(opts.mutants)
    if opts.only:
        unknown = sorted(set(opts.only) - {e["name"] for e in entries})
        if unknown:
            parser.error(f"unknown entries: {', '.join(unknown)}")
        entries = [e for e in entries if e["name"] in opts.only]
    if opts.list:
        for e in entries:
            print(f"{e['name']:32} {applicability(e, ROOT):9} {e['file']:24} {e['description']}")
        return 0
    args = PYTEST_ARGS + shlex.split(opts.pytest_args)
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="circuitsim-mutation-") as tmp:
        tree = copy_tree(ROOT, Path(tmp))
        probe(tree)
        timeout = opts.timeout or 600.0
        if not opts.no_baseline:
            rc, timed_out, seconds, out = run_suite(tree, args, timeout)
            print(f"baseline: exit {rc}, {seconds:.0f} s", flush=True)
            if rc != 0 or timed_out:
                print(out[-3000:])
                raise SystemExit("mutation check: the unmodified suite does not pass; stopping")
            timeout = opts.timeout or max(120.0, 3 * seconds)
        for entry in entries:
            name, rel = entry["name"], entry["file"]
            state = applicability(entry, tree)
            if state != "ok":
                note = ("text not found: re-target this entry" if state == "STALE"
                        else "text occurs more than once: make it longer")
                outcomes.append(Outcome(name, rel, state, detail=note))
                print(f"{name}: {state}", flush=True)
                continue
            path = tree / rel
            original = path.read_text()
            path.write_text(original.replace(entry["find"], entry["replace"], 1))
            try:
                rc, timed_out, seconds, out = run_suite(tree, args, timeout)
            finally:
                path.write_text(original)
            result = classify(rc, timed_out)
            detail = {"CAUGHT": first_failure(out), "TIMEOUT": f"over {timeout:.0f} s",
                      "ERROR": f"pytest exit {rc}: {first_failure(out)}"}.get(result, "")
            if result == "SURVIVED" and entry.get("equivalent"):
                detail = "expected (equivalent): " + entry["equivalent"]
            outcomes.append(Outcome(name, rel, result, seconds, detail))
            print(f"{name}: {result} ({seconds:.0f} s) {detail}", flush=True)
    total = time.perf_counter() - started
    print()
    print(table(outcomes))
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.result] = counts.get(o.result, 0) + 1
    summary = ", ".join(f"{n} {r.lower()}" for r, n in sorted(counts.items()))
    print(f"\n{len(outcomes)} mutants: {summary}; {total:.0f} s in all")
    excused = {o.name for o in outcomes if o.detail.startswith("expected (equivalent)")}
    bad = [o for o in outcomes if o.result != "CAUGHT" and o.name not in excused]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
