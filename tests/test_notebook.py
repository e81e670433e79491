"""notebooks/quickstart.ipynb runs top to bottom (tiny settings) and shows its pictures."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

from tests.conftest import ROOT


def test_quickstart_notebook_executes_and_shows_pictures(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGEN_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("FACEGEN_NOTEBOOK_WORK", str(tmp_path))
    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    pictures = [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if "image/png" in o.get("data", {})
    ]
    assert len(pictures) >= 5
    assert list(tmp_path.rglob("textured.obj")) and list(tmp_path.rglob("last.ckpt"))
    assert not (ROOT / "notebooks" / "data").exists() and not (ROOT / "notebooks" / "runs").exists()
