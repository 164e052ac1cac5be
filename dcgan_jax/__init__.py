"""JAX/Flax DCGAN-family GANs. `load_generator` turns a trained run, or a generator file,
into an object that draws faces (`dcgan_jax.generator`)."""

__all__ = ["Generator", "load_generator"]


def __getattr__(name: str):
  # Imported on first use: a worker process that imports a module of the package (the
  # data preparation's, grain's) does not load JAX for it.
  if name in __all__:
    from dcgan_jax import generator  # pylint: disable=g-import-not-at-top
    return getattr(generator, name)
  raise AttributeError(f"module 'dcgan_jax' has no attribute {name!r}")
