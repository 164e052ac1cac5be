"""Fixtures shared across test modules, and one compilation cache for the whole run."""

import os
import shutil
import tempfile

import pytest

# One BLAS (and OpenMP) thread per process: xdist's workers and the commands tests start
# share the cores, and OpenBLAS's threads spinning for a core another process holds made
# NumPy's 2048-d eigendecompositions (FID, checks of saved statistics) 5 to 8 times slower.
# Set before numpy loads, here and in every process started from here; pyproject leaves
# out jaxtyping's pytest plugin, which would load numpy first.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
  os.environ.setdefault(_variable, "1")

from tests.runs import train_tiny  # pylint: disable=g-import-not-at-top  (after the above)

_CACHE_DIR = pytest.StashKey[str]()
_SHARED_CACHE_VARIABLE = "DCGAN_JAX_TESTS_XLA_CACHE"

_TEST_ENV = {
    # Tests compile the same tiny programs many times, in this process and in the CLI
    # processes they start; XLA's persistent cache compiles each once per session.
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    # Evaluations in tests never try to fetch the Inception weights from the network.
    "DCGAN_JAX_OFFLINE": "1",
}
# The tests' programs are tiny and their time is XLA's compilation: the backend's
# optimisations are off for them, in this process and in those they start, which halves
# the suite. Values a test compares are all computed under these flags.
_TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: starts several processes or times a benchmark; "
                                     "deselect with -m 'not slow'")
  config.addinivalue_line("markers", "bit_exact: compares fingerprints or other bit-exact "
                                     "values; test_instruction_sets runs these again under "
                                     "another instruction set")
  # xdist's workers inherit the controller's environment: they share its cache, so a
  # program one worker compiled is read by the others; the controller removes it.
  cache_dir = os.environ.get(_SHARED_CACHE_VARIABLE)
  if cache_dir is None:
    cache_dir = tempfile.mkdtemp(prefix="dcgan_jax_tests_xla_cache_")
    os.environ[_SHARED_CACHE_VARIABLE] = cache_dir
    config.stash[_CACHE_DIR] = cache_dir
  os.environ.update(_TEST_ENV, JAX_COMPILATION_CACHE_DIR=cache_dir,
                    XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {_TEST_XLA_FLAGS}".strip())
  import jax  # pylint: disable=g-import-not-at-top  (after the environment is set)
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
  shutil.rmtree(config.stash.get(_CACHE_DIR, ""), ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
  """A run of the tiny synthetic config (8 steps), trained once; read it, never write
  into it."""
  workdir = tmp_path_factory.mktemp("tiny_run")
  train_tiny(workdir)
  return workdir
