"""Every config file and the variants its docstring lists load and pass validation."""

import glob
import os
import re

import pytest

from jaxdist.errors import ConfigError
from jaxdist.experiment import overrides, validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True))


def _documented_variants(path):
  """`--config ...:variant` examples of the file's docstring, plus the default and cpu."""
  with open(path) as f:
    text = f.read()
  variants = re.findall(r"--config \S*?:(\S+)", text)
  return sorted({"", *variants, *(v + ",cpu" for v in variants if "cpu" not in v)})


@pytest.mark.parametrize("path", FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_variants_validate(path):
  variants = _documented_variants(path)
  assert variants
  with open(path) as f:
    has_cpu = "cpu" in f.read()
  for variant in variants:
    if "cpu" in variant and not has_cpu:
      continue
    validate(overrides.load(f"{path}:{variant}" if variant else path))


def test_unknown_variant_option_is_named():
  path = os.path.join(ROOT, "configs", "local_sgd", "cifar10_resnet20.py")
  with pytest.raises(ConfigError, match=r"--config ...:HH: no such variant option \(allowed: H, "):
    overrides.load(f"{path}:HH=3")
  with pytest.raises(ConfigError, match=r"--config ...:H: cannot use 'two'"):
    overrides.load(f"{path}:H=two")


def test_a_misspelt_variant_is_refused_not_ignored():
  path = os.path.join(ROOT, "configs", "quickstart.py")
  with pytest.raises(ConfigError, match=r"--config ...:minibatchh: no such variant option "
                     r"\(allowed: ef_sign, minibatch\)"):
    overrides.load(f"{path}:minibatchh")
  assert overrides.load(f"{path}:minibatch").algo.name == "minibatch_sgd"
