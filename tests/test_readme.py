"""Every code block of README.md runs as written.

Python blocks run one by one, each in a fresh namespace, in a scratch directory. Bash blocks run
whole (``bash -e``) in a scratch directory where ``.venv/bin/circuitsim`` and ``.venv/bin/python``
are this interpreter; ``bash run.sh CMD`` lines (which install and then run for minutes) are
checked against the commands ``run.sh`` knows instead of being run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _blocks(language: str) -> list[tuple[int, str]]:
    text = README.read_text()
    out = []
    for match in re.finditer(r"^```(\w+)\n(.*?)^```", text, flags=re.S | re.M):
        if match.group(1) == language:
            out.append((text[: match.start()].count("\n") + 1, match.group(2)))
    return out


def _run_sh_commands() -> set[str]:
    text = (ROOT / "run.sh").read_text()
    case = text[text.index('case "$cmd" in') :]
    return set(re.findall(r"^\s+([a-z]+)\)", case, flags=re.M))


PYTHON = _blocks("python")
BASH = _blocks("bash")


def test_the_readme_has_code_to_check():
    assert len(PYTHON) >= 3 and len(BASH) >= 2


@pytest.mark.parametrize("line, code", PYTHON, ids=[f"line{n}" for n, _ in PYTHON])
def test_python_block_runs(line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})


@pytest.fixture
def shim(tmp_path):
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, target in (("python", f'exec "{sys.executable}" "$@"'),
                         ("circuitsim", f'exec "{sys.executable}" -m circuitsim "$@"')):
        path = bin_dir / name
        path.write_text(f"#!/usr/bin/env bash\n{target}\n")
        path.chmod(0o755)
    return tmp_path


@pytest.mark.parametrize("line, code", BASH, ids=[f"line{n}" for n, _ in BASH])
def test_bash_block_runs(line, code, shim):
    known = _run_sh_commands()
    script = []
    for raw in code.splitlines():
        if raw.startswith("bash run.sh"):
            sub = raw.split()[2]
            assert sub in known, f"README.md:{line}: run.sh has no command {sub!r}"
            script.append("true  # " + raw)
        else:
            script.append(raw)
    done = subprocess.run(["bash", "-e", "-c", "\n".join(script)], cwd=shim,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (f"README.md:{line}: the block failed ({done.returncode}):\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
