"""Data parallelism over a one-axis `data` mesh: batch sharded, state replicated. A
population (`dcgan_jax.population`) adds a `members` axis: its stacked states and batches
are split over both."""

import functools
import math
from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
MEMBERS_AXIS = "members"


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process."""
  return Mesh(np.array(jax.devices()), (DATA_AXIS,))


def population_mesh_shape(num_members: int, num_devices: int,
                          num_processes: int = 1) -> tuple[int, int]:
  """(member groups, data shards): the members spread over as many devices as divide them
  evenly (all of them when the members are a multiple of the devices, so that no gradient
  crosses a device), each member's batch split over the rest. Over several processes
  every member's batch is split over all devices, as a solo run's is, so that each
  process reads its part of every member's batch."""
  groups = math.gcd(num_members, num_devices) if num_processes == 1 else 1
  return groups, num_devices // groups


def make_population_mesh(num_members: int) -> Mesh:
  """A (members, data) mesh over every device of every process."""
  devices = np.array(jax.devices())
  return Mesh(devices.reshape(population_mesh_shape(num_members, devices.size,
                                                    jax.process_count())),
              (MEMBERS_AXIS, DATA_AXIS))


def member_sharded(mesh: Mesh) -> NamedSharding:
  """A population's arrays (state, settings, metrics): the leading member axis split over
  the member groups."""
  return NamedSharding(mesh, PartitionSpec(MEMBERS_AXIS))


def member_batch_sharded(mesh: Mesh) -> NamedSharding:
  """A population's (P, B, ...) batch: members over the groups, each batch over `data`."""
  return NamedSharding(mesh, PartitionSpec(MEMBERS_AXIS, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def jit_train_step(step_fn: Callable, mesh: Mesh) -> Callable:
  """Jits `step_fn(state, batch) -> (state, metrics)`: batch entries sharded, state and metrics
  replicated, the incoming state donated so its buffers are reused."""
  state_sharding = replicated(mesh)
  return jax.jit(step_fn, in_shardings=(state_sharding, batch_sharded(mesh)),
                 out_shardings=(state_sharding, state_sharding), donate_argnums=0)


def to_host(tree):
  """Every leaf as one numpy array on this host, read from the devices that hold its parts
  (no program runs: slicing a member out of a member-sharded array on the devices would
  compile one with a collective); a leaf replicated over processes is read from this
  process's copy."""
  def read(leaf):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      return np.asarray(leaf.addressable_data(0))
    return np.asarray(leaf)
  return jax.tree.map(read, tree)


def check_global_batch_size(global_batch_size: int, mesh: Mesh) -> None:
  shards = mesh.shape[DATA_AXIS]
  if global_batch_size % shards:
    devices = (f"the number of devices {shards}" if shards == mesh.size
               else f"the {shards} devices each member's batch is split over")
    raise ValueError(f"train.batch_size {global_batch_size} must divide by {devices}; "
                     f"choose a multiple of {shards}.")


def global_batch(local_batch: dict[str, np.ndarray], sharding: NamedSharding
                 ) -> dict[str, jax.Array]:
  """Global arrays from each process's slice of every entry of the batch (no copy between
  hosts)."""
  return jax.tree.map(functools.partial(jax.make_array_from_process_local_data, sharding),
                      local_batch)


def from_every_process(values: np.ndarray) -> np.ndarray:
  """This process's `values` and every other's, stacked in process order."""
  if jax.process_count() == 1:
    return values[None]
  return np.asarray(multihost_utils.process_allgather(values))


def any_process(flag: bool) -> bool:
  """`flag` of any process: a decision every process must take alike (to stop at one
  step, to set one checkpoint aside)."""
  return bool(from_every_process(np.array(flag)).any())
