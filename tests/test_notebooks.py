"""The quickstart notebook runs top to bottom and reaches a sensible accuracy."""

import os

import nbformat
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_notebook_executes(data_dir, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", data_dir)  # the kernel generates MNIST-1D there
  notebook = nbformat.read(os.path.join(ROOT, "notebooks", "quickstart.ipynb"), as_version=4)
  NotebookClient(notebook, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": ROOT}}).execute()
  outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                    for o in cell.outputs)
  assert "local_sgd      test accuracy" in outputs and "minibatch_sgd  test accuracy" in outputs
  accuracies = [float(line.split("test accuracy ")[1][:5]) for line in outputs.splitlines()
                if "test accuracy 0." in line and "bits sent" in line]
  assert len(accuracies) == 2 and min(accuracies) > 0.45
  assert abs(accuracies[0] - accuracies[1]) < 0.05  # local SGD keeps up with mini-batch SGD
  images = [o for cell in notebook.cells for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})]
  assert images
