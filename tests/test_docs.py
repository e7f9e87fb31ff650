"""The API reference builds from the docstrings without a warning, and covers the public API."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_api_reference_builds_without_warnings(tmp_path):
  command = [sys.executable, "-m", "pdoc", "jaxdist", "jaxdist.experiment", "--docformat",
             "google", "-o", str(tmp_path)]
  done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "Warn" not in done.stderr and "Warn" not in done.stdout, done.stderr[-2000:]
  for page in ("jaxdist.html", "jaxdist/training/runner.html", "jaxdist/core/collectives.html",
               "jaxdist/algorithms/local_sgd.html", "jaxdist/algorithms/decentralized/choco.html",
               "jaxdist/experiment/build.html"):
    assert (tmp_path / page).is_file(), page
  runner = (tmp_path / "jaxdist/training/runner.html").read_text()
  assert "checkpoint_dir" in runner and "Returns" in runner
