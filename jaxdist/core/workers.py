"""The worker axis: K workers running one algorithm, simulated on one device or spread over a mesh.

An algorithm is written for one worker. `Workers.map` runs it for all workers at once, with
`jaxdist.core.collectives` bound to this grid while it is traced:

* simulated: every per-worker leaf carries the workers on leading axes; `jax.vmap` on one device;
* shard_map: the same stacked leaves split over a device mesh; `jax.shard_map` with `jax.vmap`
  inside for the K/D workers each device holds.

Workers sit on a grid: `(K,)` for flat methods, `(nodes, workers_per_node)` for hierarchical ones.
Each grid dimension is split into a device part (a mesh axis of the same name) and a local part
(a vmap axis named `<dim>_local`). Inside the mapped function a worker reaches the others only
through the collectives (`Comm`): means over all workers or over some grid dimensions, shifts
along a dimension (neighbour exchange: one `ppermute` between devices, never an all-gather) and
an all-gather.

Leaves are either per-worker (axis spec 0: stacked on the grid axes) or shared (axis spec None:
one copy that every worker holds identically, e.g. step counters or the replicated model of
mini-batch SGD); `jaxdist.core.state.worker_axes` derives the prefix from an algorithm's state.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

from jaxdist.core import collectives
from jaxdist.core.state import PER_WORKER, SHARED
from jaxdist.errors import ArgumentError

__all__ = ["PER_WORKER", "SHARED", "Comm", "GridDim", "Workers", "sharded", "simulated"]


@dataclasses.dataclass(frozen=True)
class GridDim:
  """One dimension of the worker grid: `size` workers, `devices` of them on distinct devices."""

  name: str
  size: int
  devices: int = 1
  on_mesh: bool = False

  @property
  def local(self) -> int:
    return self.size // self.devices

  @property
  def local_axis(self) -> str:
    return f"{self.name}_local"

  @property
  def axes(self) -> tuple[str, ...]:
    """Named axes that together index this dimension (mesh axis first)."""
    return (self.name, self.local_axis) if self.on_mesh else (self.local_axis,)


class Comm:
  """Collectives seen by one worker inside `Workers.map`."""

  def __init__(self, dims: Sequence[GridDim]):
    self.dims = tuple(dims)
    self._by_name = {d.name: d for d in self.dims}

  @property
  def num_workers(self) -> int:
    return math.prod(d.size for d in self.dims)

  def size(self, dim: str) -> int:
    return self._dim(dim).size

  def _dim(self, name: str | None) -> GridDim:
    if name is None:
      if len(self.dims) != 1:
        raise ValueError(f"name a grid dimension: one of {tuple(self._by_name)}")
      return self.dims[0]
    if name not in self._by_name:
      raise ValueError(f"no grid dimension {name!r}: the grid has {tuple(self._by_name)}")
    return self._by_name[name]

  def _dims(self, names: str | Sequence[str] | None) -> tuple[GridDim, ...]:
    if names is None:
      return self.dims
    names = (names,) if isinstance(names, str) else names
    return tuple(self._dim(n) for n in names)

  def index(self, dim: str | None = None) -> jax.Array:
    """This worker's position along `dim`, or its flat (row-major) index when `dim` is None."""
    if dim is not None or len(self.dims) == 1:
      d = self._dim(dim)
      local = lax.axis_index(d.local_axis)
      return lax.axis_index(d.name) * d.local + local if d.on_mesh else local
    flat = jnp.int32(0)
    for d in self.dims:
      flat = flat * d.size + self.index(d.name)
    return flat

  def mean(self, tree: Any, dims: str | Sequence[str] | None = None) -> Any:
    """Mean over all workers, or over the workers that differ only along `dims` (a sub-group)."""
    axes = tuple(a for d in self._dims(dims) for a in d.axes)
    return jax.tree.map(lambda x: lax.pmean(x, axes), tree)

  def shift(self, tree: Any, offset: int, dim: str | None = None) -> Any:
    """Neighbour exchange: every worker receives the value of the worker `offset` places before it.

    Along a grid dimension of size n, worker i gets the value of worker (i - offset) mod n, like
    `jnp.roll(x, offset)` over the workers. Between devices this is one or two `ppermute`s of the
    device's block of workers.
    """
    d = self._dim(dim)
    if not isinstance(offset, (int, np.integer)):
      raise TypeError(f"shift offset must be a static int, got {type(offset).__name__}")
    return jax.tree.map(lambda x: _shift(x, int(offset), d), tree)

  def gather(self, tree: Any, dim: str | None = None) -> Any:
    """Every worker's value along `dim`, stacked in worker order on a new leading axis.

    An all-gather: d * n numbers reach every worker, so gossip uses it only for graphs that
    `shift` cannot express cheaply (dense mixing matrices, random matchings).
    """
    d = self._dim(dim)

    def leaf(x):
      x = lax.all_gather(x, d.local_axis)
      if d.on_mesh:
        x = lax.all_gather(x, d.name)
        x = x.reshape((d.size,) + x.shape[2:])
      return x

    return jax.tree.map(leaf, tree)


def _shift(x: jax.Array, offset: int, d: GridDim) -> jax.Array:
  def across_devices(v, k):
    k %= d.devices
    if k == 0:
      return v
    return lax.ppermute(v, d.name, [(i, (i + k) % d.devices) for i in range(d.devices)])

  def within_device(v, k):
    k %= d.local
    if k == 0:
      return v
    return lax.ppermute(v, d.local_axis, [(i, (i + k) % d.local) for i in range(d.local)])

  # Global index g = device * L + local. Worker g needs g - offset; write offset = q * L + r.
  q, r = divmod(offset, d.local)
  same_block = within_device(across_devices(x, q), r)
  if r == 0:
    return same_block
  next_block = within_device(across_devices(x, q + 1), r)
  return jnp.where(lax.axis_index(d.local_axis) >= r, same_block, next_block)


def _is_axis_leaf(x) -> bool:
  return x is None or isinstance(x, int)


class Workers:
  """K workers on a grid, simulated (vmap) or on a device mesh (shard_map + vmap)."""

  def __init__(self, dims: Sequence[GridDim], mesh: Mesh | None = None):
    self.dims = tuple(dims)
    self.mesh = mesh
    self.comm = Comm(self.dims)

  @property
  def num_workers(self) -> int:
    return self.comm.num_workers

  @property
  def shape(self) -> tuple[int, ...]:
    return tuple(d.size for d in self.dims)

  @property
  def num_devices(self) -> int:
    return math.prod(d.devices for d in self.dims)

  def map(self, fn: Callable, in_axes: Any, out_axes: Any) -> Callable:
    """Runs `fn`, written for one worker, for every worker.

    `in_axes`/`out_axes` are vmap-style prefixes: an int is the position of the worker axes in a
    per-worker leaf (the grid dimensions sit there consecutively), None marks a shared leaf.
    """
    @functools.wraps(fn)
    def with_collectives(*args):
      with collectives.active(self.comm):
        return fn(*args)

    mapped = with_collectives
    for d in reversed(self.dims):
      mapped = jax.vmap(mapped, in_axes=in_axes, out_axes=out_axes, axis_name=d.local_axis,
                        axis_size=d.local)
    if self.mesh is None:
      return mapped
    return jax.shard_map(mapped, mesh=self.mesh, in_specs=self._specs(in_axes),
                         out_specs=self._specs(out_axes), check_vma=False)

  def _specs(self, axes: Any) -> Any:
    names = tuple(d.name for d in self.dims)

    def spec(a):
      return PartitionSpec() if a is None else PartitionSpec(*([None] * a), *names)

    return jax.tree.map(spec, axes, is_leaf=_is_axis_leaf)

  def shardings(self, axes: Any, tree: Any) -> Any:
    """Shardings that place `tree` (stacked per-worker leaves, shared leaves) on the devices."""
    if self.mesh is None:
      device = SingleDeviceSharding(jax.local_devices()[0])
      return jax.tree.map(lambda _: device, tree)
    specs = self._specs(axes)
    specs = jax.tree.broadcast(specs, tree, is_leaf=lambda x: isinstance(x, PartitionSpec))
    return jax.tree.map(lambda s: NamedSharding(self.mesh, s), specs,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))

  def abstract(self, axes: Any, shapes: Any) -> Any:
    """`shapes` (ShapeDtypeStructs) with the shardings that `axes` gives them."""
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        shapes, self.shardings(axes, shapes))


def simulated(shape: Sequence[int], names: Sequence[str]) -> Workers:
  """All workers on one device, the worker axes vmapped."""
  if jax.process_count() > 1:
    raise ArgumentError("layout", f"simulated workers live on one device, but this run has "
                        f"{jax.process_count()} processes", "jaxdist.Sharded()")
  return Workers([GridDim(n, int(s)) for n, s in zip(names, shape)])


def sharded(shape: Sequence[int], names: Sequence[str], num_devices: int = 0) -> Workers:
  """The workers spread over `num_devices` devices (0: every visible one, of all processes)."""
  shape, names = tuple(int(s) for s in shape), tuple(names)
  available = jax.devices()
  if num_devices == 0:
    num_devices = len(available)
  if not 1 <= num_devices <= len(available):
    raise ArgumentError(
        "num_devices",
        f"{num_devices} devices asked for but {len(available)} visible (on CPU, simulate devices "
        f"with XLA_FLAGS=--xla_force_host_platform_device_count={num_devices})",
        f"1..{len(available)}, or 0 for all")
  per_dim = split_devices(shape, num_devices)
  if per_dim is None:
    raise ArgumentError(
        "num_workers",
        f"{math.prod(shape)} workers on a grid {shape} cannot be spread evenly over "
        f"{num_devices} devices", f"a multiple of {num_devices} along the grid")
  mesh = Mesh(np.asarray(available[:num_devices]).reshape(per_dim), names)
  return Workers([GridDim(n, s, k, True) for n, s, k in zip(names, shape, per_dim)], mesh)


def split_devices(shape: tuple[int, ...], num_devices: int) -> tuple[int, ...] | None:
  """Devices along each grid dimension, filling the innermost dimension first."""
  left, per_dim = num_devices, []
  for size in reversed(shape):
    k = math.gcd(left, size)
    per_dim.append(k)
    left //= k
  return tuple(reversed(per_dim)) if left == 1 else None
