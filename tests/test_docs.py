"""Every code block in README.md and docs/*.md either runs here as written or says why it cannot.

A block is marked by the HTML comment just above it: ``<!-- run -->`` (Python blocks are executed in a
fresh namespace, shell blocks with bash, each in its own empty folder, and must print something) or
``<!-- no-run: reason -->``. An unmarked block fails the test, so no example can silently rot.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"((?:<!--[^\n]*-->\s*\n)*)```(\w*)\n(.*?)```", re.S)


def _blocks() -> list[tuple[str, str, str, str]]:
    """(page, marker, language, code) of every fenced block."""
    out = []
    for page in PAGES:
        for comments, lang, code in _BLOCK.findall(page.read_text()):
            marks = re.findall(r"<!--\s*(run|no-run:[^>]*?)\s*-->", comments)
            out.append((page.name, marks[-1] if marks else "", lang, code))
    return out


BLOCKS = _blocks()
RUN = [(p, lang, code) for p, mark, lang, code in BLOCKS if mark == "run"]


def test_every_block_is_marked():
    unmarked = [(p, code.splitlines()[0] if code else "") for p, mark, _, code in BLOCKS if not mark]
    assert unmarked == []
    reasons = [mark for _, mark, _, _ in BLOCKS if mark.startswith("no-run")]
    assert all(len(m.split(":", 1)[1].strip()) > 10 for m in reasons), reasons


def test_readme_has_runnable_examples():
    assert sum(p == "README.md" for p, _, _ in RUN) >= 2
    assert {"architecture.md", "store.md", "filters.md", "indexes.md", "cli.md"} <= {p.name for p in PAGES}


@pytest.mark.slow
@pytest.mark.parametrize(("page", "lang", "code"), RUN, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(RUN)])
def test_block_runs(page, lang, code, tmp_path, capsys):
    if lang == "python":
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            exec(compile(code, f"{page} (code block)", "exec"), {"__name__": "__docs__"})
        finally:
            os.chdir(cwd)
        out = capsys.readouterr().out
    elif lang == "bash":
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
    else:
        pytest.fail(f"{page}: a runnable block in language {lang!r}")
    assert out.strip(), "the example should print something"
