"""The README's section on layers: its Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from circuitsim.validation import ngspice

README = Path(__file__).resolve().parents[1] / "README.md"


def _section_blocks() -> list[str]:
    text = README.read_text()
    start = text.index("## Layers: trained networks on solved tiles")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)


def test_the_section_sits_before_the_ngspice_section():
    text = README.read_text()
    assert text.index("## Layers: trained") < text.index("## Cross-checking against ngspice")


@pytest.mark.skipif(ngspice.find_executable() is None and ngspice.find_library() is None,
                    reason="the example cross-checks tiles against ngspice")
@pytest.mark.parametrize("block", _section_blocks(), ids=lambda b: b.splitlines()[0][:40])
def test_readme_layers_example_runs(block, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("sklearn")
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the example is the test
    out = capsys.readouterr().out
    assert "circuit" in out
    if ".validate(" in block:  # the blocks that cross-check tiles say that ngspice agrees
        assert "agree" in out
