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


def test_every_public_name_is_listed_once_and_loads():
    """`__all__`, the lazy homes and the TYPE_CHECKING imports of agenttally/__init__.py name
    the same names (sorted as the file keeps them), and each one loads from its home."""
    import ast

    import agenttally

    source = (ROOT / "agenttally" / "__init__.py").read_text(encoding="utf-8")
    [checking] = [node for node in ast.walk(ast.parse(source))
                  if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"]
    imported = {alias.name for node in checking.body if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert agenttally.__all__ == sorted(agenttally.__all__)
    assert set(agenttally.__all__) == set(agenttally._HOMES) == imported
    for name in agenttally.__all__:
        assert getattr(agenttally, name) is not None, name
    assert issubclass(agenttally.DimensionError, agenttally.UsageError)
