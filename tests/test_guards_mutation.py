"""The mutation check's bookkeeping (the check itself runs by hand, see tests/mutation/run.py):
its list is well formed, and a planted bug whose text has gone is STALE, never CAUGHT."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("mutation_run", HERE / "mutation" / "run.py")
run = sys.modules["mutation_run"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)


def test_mutant_list_is_well_formed():
    entries = run.load()
    assert len(entries) >= 11
    for entry in entries:
        assert (HERE.parent / entry["file"]).is_file(), entry["name"]
        assert entry["find"] != entry["replace"]


def test_applicability_tells_stale_and_ambiguous_entries(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\ny = 2\ny = 2\n")
    entry = {"name": "e", "file": "m.py", "replace": "z", "description": "d"}
    assert run.applicability({**entry, "find": "x = 1"}, tmp_path) == "ok"
    assert run.applicability({**entry, "find": "x = 3"}, tmp_path) == "STALE"
    assert run.applicability({**entry, "find": "y = 2"}, tmp_path) == "AMBIGUOUS"
    assert run.applicability({**entry, "find": "x", "file": "gone.py"}, tmp_path) == "STALE"


@pytest.mark.parametrize("rc, timed_out, result", [
    (0, False, "SURVIVED"), (1, False, "CAUGHT"), (2, False, "CAUGHT"), (None, True, "TIMEOUT"),
    (-9, True, "TIMEOUT"), (4, False, "ERROR"), (5, False, "ERROR"),
])
def test_outcomes_from_pytest_exit_status(rc, timed_out, result):
    assert run.classify(rc, timed_out) == result


def test_bad_lists_are_refused(tmp_path):
    good = {"name": "a", "file": "f.py", "find": "x", "replace": "y", "description": "d"}
    for bad, match in [([good, good], "duplicate"), ([{**good, "find": ""}], "lacks find"),
                       ([{**good, "replace": "x"}], "by itself")]:
        path = tmp_path / "m.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            run.load(path)


def test_first_failure_names_the_test():
    out = "....F\n=== short test summary info ===\nFAILED tests/t.py::test_x - assert 0\n"
    assert run.first_failure(out) == "tests/t.py::test_x"
    out = "FAILED tests/t.py::test_y[v_gate is nan] - ValueError\n"
    assert run.first_failure(out) == "tests/t.py::test_y[v_gate is nan]"
