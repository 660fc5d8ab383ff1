"""The README's Python example runs as written and its assertion holds."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_python_example_runs(tmp_path, capsys, monkeypatch):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The Python API"):readme.index("## How it is built")]
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    (tmp_path / "data").symlink_to(ROOT / "data")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "36,600 new" in out and "invoice total 553.99" in out
    assert os.path.exists(tmp_path / "scratch.duckdb")
