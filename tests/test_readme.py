"""The README's research snippet runs as written (on the zoo models; slow on a cold cache)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_one_python_snippet():
    assert len(python_blocks()) == 1


@pytest.mark.slow
def test_readme_snippet_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adapters").symlink_to(README.parent / "adapters")
    exec(compile(python_blocks()[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "trainable params:" in out
    assert (tmp_path / "runs/quickstart/adapter/adapter_model.safetensors").is_file()
    assert (tmp_path / "runs/quickstart/eval/vqa.json").is_file()
