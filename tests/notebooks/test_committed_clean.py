"""Every notebook is committed clean: no outputs, no execution counts, a literal parameters cell."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

# Listed at collection time for parametrize (conftest helpers come as the nbtools fixture).
NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
EXPECTED = {"01_explore_cohort.ipynb", "02_train_and_evaluate.ipynb"}


def test_the_documented_notebooks_exist(nbtools) -> None:
    assert {p.name for p in NOTEBOOKS} >= EXPECTED
    assert [p.name for p in nbtools.notebook_paths()] == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs_or_execution_counts(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts"
    assert "widgets" not in nb.metadata  # no saved widget state either


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_holds_literal_parameters(path: Path, nbtools) -> None:
    nb = nbformat.read(path, as_version=4)
    defaults = nbtools.parameter_defaults(nbtools.parameters_cell(nb).source)
    # The defaults point at the demo `make demo` produces, relative to the repository root.
    assert defaults["DATA_DIR"] == "data/demo" and defaults["CACHE_DIR"] == "cache"
    assert defaults["DEV_NAME"] == "demo_dev" and defaults["SMALL"] is False
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_parameter_injection_replaces_values_and_refuses_unknown_names(nbtools) -> None:
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    injected = nbtools.with_parameters(nb, {"SMALL": True, "CACHE_DIR": "/tmp/x"})
    values = nbtools.parameter_defaults(nbtools.parameters_cell(injected).source)
    assert values["SMALL"] is True and values["CACHE_DIR"] == "/tmp/x"
    assert values["DATA_DIR"] == "data/demo"  # the others keep their defaults
    original = nbtools.parameter_defaults(nbtools.parameters_cell(nb).source)
    assert original["SMALL"] is False  # the notebook read from disk is untouched
    with pytest.raises(AssertionError, match="NOT_A_PARAMETER"):
        nbtools.with_parameters(nb, {"NOT_A_PARAMETER": 1})
