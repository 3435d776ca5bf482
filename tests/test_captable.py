"""The README's provider x feature table is exactly what the adapters declare."""

from __future__ import annotations

from pathlib import Path

from core.ops.captable import BEGIN, END, render

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_table_matches_declared_capabilities() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == render(), "run `interlock capabilities` and paste it into README.md"
