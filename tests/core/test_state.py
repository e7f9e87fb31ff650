"""Declared state: the worker axes come from the fields' declarations, nested ones included."""

from typing import Any, NamedTuple

import jax.numpy as jnp

import jaxdist
from jaxdist.core.state import worker_axes


@jaxdist.state_class
class Inner:
  anchor: Any = jaxdist.shared()
  error: Any = jaxdist.per_worker()


@jaxdist.state_class
class Outer:
  step: Any = jaxdist.shared()
  params: Any = jaxdist.per_worker()
  rule: Any = None


class Plain(NamedTuple):
  a: Any
  b: Any


def test_axes_follow_the_declarations_of_every_level():
  state = Outer(jnp.int32(0), {"w": jnp.zeros(3), "b": jnp.zeros(())},
                {"inner": Inner({"w": jnp.zeros(3)}, None)})
  axes = worker_axes(state)
  assert axes.step is None and axes.params == {"w": 0, "b": 0}
  assert axes.rule["inner"].anchor == {"w": None} and axes.rule["inner"].error is None


def test_undeclared_trees_are_per_worker():
  assert worker_axes(Plain(jnp.zeros(2), {"x": jnp.zeros(1)})) == Plain(0, {"x": 0})
  assert worker_axes({"k": jnp.zeros(2)}, default=None) == {"k": None}
