"""README's Python code runs as written, and the algorithm written from scratch there matches
the library's."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_code_blocks_run(monkeypatch, capsys):
  with open(os.path.join(ROOT, "README.md")) as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
  assert len(blocks) >= 2
  monkeypatch.chdir(ROOT)
  namespace = {"__name__": "readme"}
  for block in blocks:
    exec(compile(block, "README.md", "exec"), namespace)
  printed = capsys.readouterr().out
  accuracies = [float(a) for a in re.findall(r"test accuracy (\d\.\d+)", printed)]
  assert len(accuracies) == 2 and min(accuracies) > 0.8, printed
  assert namespace["difference"] < 1e-6  # PeriodicAveraging is jaxdist.local_sgd
