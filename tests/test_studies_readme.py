"""The README's studies section: every code block runs as written, its pictures exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("h5py")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
TITLE = "## Studies: sweeps, HDF5 results, plots"


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(TITLE)
    end = text.find("\n## ", start + len(TITLE))
    return text[start:end if end >= 0 else None]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section(), flags=re.DOTALL)


def test_section_follows_use():
    text = (ROOT / "README.md").read_text()
    headings = re.findall(r"^## .*$", text, flags=re.MULTILINE)
    assert headings[headings.index("## Use") + 1] == TITLE


def test_bash_block_runs(tmp_path):
    (blocks,) = [_blocks("bash")]
    assert len(blocks) == 1
    venv = ROOT / ".venv"
    if not (venv / "bin" / "circuitsim").exists():
        pytest.skip("no .venv with the circuitsim command (bash run.sh test makes it)")
    os.symlink(venv, tmp_path / ".venv")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks[0]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "study 'small': 12 of 12 points (complete)" in proc.stdout
    assert "every dataset matches its SHA-256" in proc.stdout
    assert (tmp_path / "my_study.toml").exists() and (tmp_path / "small.h5").exists()
    figs = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert len(figs) == 6 and "error-vs-r_wire.png" in figs


def test_python_blocks_run(tmp_path):
    blocks = _blocks("python")
    assert blocks
    out = ""
    for block in blocks:
        proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        out += proc.stdout
    assert "2 of 2 points (complete)" in out and "'r_wire': 2.0" in out


def test_pictures_exist():
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", _section()):
        data = (ROOT / name).read_bytes()
        assert data.startswith(b"\x89PNG"), name
