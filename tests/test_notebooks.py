"""The notebooks run top to bottom and reach sensible accuracies."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _execute(name, data_dir, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", data_dir)  # the kernel generates MNIST-1D there
  notebook = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
  NotebookClient(notebook, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": ROOT}}).execute()
  outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                    for o in cell.outputs)
  images = [o for cell in notebook.cells for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})]
  return notebook, outputs, images


def _accuracies(outputs):
  return {line.split()[0]: float(line.split("test accuracy ")[1][:5])
          for line in outputs.splitlines() if "test accuracy 0." in line and "bits sent" in line}


@pytest.mark.parametrize("name", ["quickstart.ipynb", "bring_your_own_model.ipynb"])
def test_notebook_installs_nothing_when_jaxdist_is_importable(name):
  notebook = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
  install = notebook.cells[1].source
  assert "JAXDIST_SOURCE" in install and 'find_spec("jaxdist") is None' in install
  assert "--no-deps" in install  # keeps the kernel's jax, numpy, flax


def test_quickstart_notebook_executes(data_dir, monkeypatch):
  _, outputs, images = _execute("quickstart.ipynb", data_dir, monkeypatch)
  accuracies = _accuracies(outputs)
  assert set(accuracies) == {"local_sgd", "minibatch_sgd"}, outputs[-2000:]
  assert min(accuracies.values()) > 0.8
  assert abs(accuracies["local_sgd"] - accuracies["minibatch_sgd"]) < 0.05
  assert images


def test_bring_your_own_model_notebook_uses_only_the_public_api(data_dir, monkeypatch):
  notebook, outputs, images = _execute("bring_your_own_model.ipynb", data_dir, monkeypatch)
  code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
  imports = [line for line in code.splitlines()
             if line.startswith(("import ", "from ")) and "jaxdist" in line]
  assert imports == ["import jaxdist"], imports
  accuracies = _accuracies(outputs)
  assert set(accuracies) == {"minibatch_sgd", "local_sgd", "choco_sgd"}, outputs[-2000:]
  assert min(accuracies.values()) > 0.85
  assert images
