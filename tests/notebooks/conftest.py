"""Fixtures of the notebook tests: the notebooks, a kernel that is this interpreter, a runner.

The runner executes a notebook with nbclient in a temporary folder after replacing the source of
its ``parameters`` cell (papermill-style) with the test's values, so the run uses small settings
and writes nothing into the repository.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import pytest
from nbformat import NotebookNode

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL_NAME = "adstage-tests"  # a kernelspec of our own: never whatever "python3" resolves to
CELL_TIMEOUT_S = 300


def notebook_paths() -> list[Path]:
    """Every notebook under notebooks/, sorted."""
    return sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def parameters_cell(nb: NotebookNode) -> NotebookNode:
    """The first code cell, which must be the one tagged ``parameters``."""
    cell = next(c for c in nb.cells if c.cell_type == "code")
    if "parameters" not in cell.metadata.get("tags", []):
        raise AssertionError("the first code cell is not tagged 'parameters'")
    return cell


def parameter_defaults(source: str) -> dict[str, Any]:
    """``NAME = literal`` assignments of a parameters cell (anything else is an error)."""
    values: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            raise AssertionError(f"parameters cell: not a NAME = value line: {ast.unparse(node)}")
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def with_parameters(nb: NotebookNode, params: dict[str, Any]) -> NotebookNode:
    """A copy of ``nb`` whose parameters cell assigns ``params`` over its defaults."""
    nb = copy.deepcopy(nb)
    cell = parameters_cell(nb)
    values = parameter_defaults(cell.source)
    unknown = sorted(set(params) - set(values))
    if unknown:
        raise AssertionError(f"not parameters of this notebook: {unknown}")
    values.update(params)
    cell.source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    return nb


@pytest.fixture(scope="session")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of kernelspecs holding one that starts this very interpreter."""
    kernels = tmp_path_factory.mktemp("jupyter") / "kernels"
    spec_dir = kernels / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "adstage tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return kernels


@pytest.fixture(scope="session")
def run_notebook(kernel_dir: Path) -> Callable[..., NotebookNode]:
    """``run_notebook(name, workdir, **params)`` -> the executed notebook.

    The kernel is this interpreter (our own kernelspec, whatever ``python3`` resolves to), with
    its working directory in ``workdir``. A last cell is appended that prints the kernel's
    interpreter, so a test can check the notebook ran on the interpreter under test.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    specs = KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    assert specs.get_kernel_spec(KERNEL_NAME).argv[0] == sys.executable
    # The inline backend, as in Jupyter, even when the test process chose another one.
    env = {**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline"}

    def run(name: str, workdir: Path, **params: Any) -> NotebookNode:
        nb = with_parameters(nbformat.read(NOTEBOOKS_DIR / name, as_version=4), params)
        nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint('KERNEL', sys.executable)"))
        client = NotebookClient(
            nb,
            km=KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs),
            kernel_name=KERNEL_NAME,
            timeout=CELL_TIMEOUT_S,
            allow_errors=True,  # errors are asserted on, with the cell that raised them
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute(env=env)
        return nb

    return run


def outputs(nb: NotebookNode) -> list[NotebookNode]:
    """Every output of every code cell, in order."""
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def error_report(nb: NotebookNode) -> str:
    """The cells that raised, with their traceback; empty when none did."""
    parts = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                trace = "\n".join(out.get("traceback", []))
                parts.append(f"cell {i}:\n{cell.source}\n--- {out.ename}: {out.evalue}\n{trace}")
    return "\n\n".join(parts)


def text_of(nb: NotebookNode) -> str:
    """All stream text and text/plain or text/html results, joined."""
    parts = []
    for out in outputs(nb):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.data.get("text/plain", ""))
            parts.append(out.data.get("text/html", ""))
    return "\n".join(parts)


def png_count(nb: NotebookNode) -> int:
    """How many PNG images the notebook displayed."""
    return sum(1 for out in outputs(nb) if "image/png" in out.get("data", {}))


@pytest.fixture(scope="session")
def nbtools() -> SimpleNamespace:
    """The helpers above, for tests (conftest modules are not importable under importlib mode)."""
    return SimpleNamespace(
        notebook_paths=notebook_paths,
        parameters_cell=parameters_cell,
        parameter_defaults=parameter_defaults,
        with_parameters=with_parameters,
        outputs=outputs,
        error_report=error_report,
        text_of=text_of,
        png_count=png_count,
    )
