"""Notebook fixtures: a database holding the demo workspace plus a generated history, and a notebook runner."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from cryptography.fernet import Fernet
from nbclient import NotebookClient

from sample_data.history import seed_history
from sample_data.seed import seed_demo

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@dataclass(frozen=True)
class ExecutedNotebook:
    notebook: nbformat.NotebookNode
    seconds: float

    @property
    def text(self) -> str:
        """Everything the notebook printed or displayed as text, in order."""
        parts = []
        for cell in self.notebook.cells:
            for output in cell.get("outputs", []):
                if output.output_type == "stream":
                    parts.append(output.text)
                elif "text/plain" in output.get("data", {}):
                    parts.append(output.data["text/plain"])
        return "\n".join(parts)

    @property
    def images(self) -> int:
        return sum("image/png" in o.get("data", {}) for c in self.notebook.cells for o in c.get("outputs", []))

    @property
    def errors(self) -> list:
        return [o for c in self.notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]


@pytest.fixture
def history_database(uow, database_url) -> tuple[str, list[str]]:
    """The session's test database, emptied, then filled with seed_demo + seed_history; (url, history job ids)."""
    key = Fernet.generate_key().decode()
    with uow() as tx:
        seed_demo(tx.session, credentials_key=key)
        job_ids = seed_history(tx.session, credentials_key=key, batches=8, seed=7)
        tx.commit()
    return database_url, job_ids


@pytest.fixture
def run_notebook():
    """Execute a notebook of notebooks/ top to bottom in a fresh kernel (which inherits os.environ)."""

    def run(name: str) -> ExecutedNotebook:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        started = time.monotonic()
        # Raises CellExecutionError, naming the cell, on the first cell that fails.
        NotebookClient(
            notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
        ).execute()
        return ExecutedNotebook(notebook=notebook, seconds=time.monotonic() - started)

    return run
