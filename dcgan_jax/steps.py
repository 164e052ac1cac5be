"""Pure GAN steps: `train_step(setup, state, batch) -> (state, metrics)` and sampling.

Generic over the variant (`setup.variant`): its networks, loss and latents. Nothing
here knows about devices: the loop jits these with the batch sharded over a named
`data` mesh axis, and BatchNorm's batch means become global-batch means.

A batch is a dict: "image" uint8 (B, H, W, 3) and "label" int8 (B, A), the attributes
(+1/-1) of each image (A may be 0); a variant that is not conditional ignores labels.
"""

import jax
import jax.numpy as jnp
import optax

from dcgan_jax import augment
from dcgan_jax.losses import Batch, Metrics
from dcgan_jax.train_state import EmaTrainState, GanSetup, TrainState
from dcgan_jax.variants import Variant

# Keys of one step: the fakes of D update i come from latents drawn with
# fold_in(step_key, i); the losses' and augmentations' randomness folds these constants
# into that key.
_D_LOSS_STREAM = 1
_G_LOSS_STREAM = 2
_AUGMENT_REAL_STREAM = 3
_AUGMENT_FAKE_STREAM = 4
_AUGMENT_G_STREAM = 5
_FAKE_LABELS_STREAM = 6


def to_model_range(images_BHWC: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [-1, 1]; done on device so the host ships uint8."""
  return images_BHWC.astype(jnp.float32) / 127.5 - 1.0


def from_model_range(x_BHWC: jax.Array) -> jax.Array:
  """float [-1, 1] -> uint8 [0, 255]."""
  return jnp.clip(jnp.round((x_BHWC + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def _seen_by_d(setup: GanSetup, batch: Batch, key: jax.Array) -> Batch:
  """The batch as the discriminator sees it: through the DiffAugment policy, if any."""
  if not setup.augment:
    return batch
  return {**batch, "image": augment.augment(batch["image"], setup.augment, key)}


def _d_update(setup: GanSetup, variant: Variant, state: TrainState, real: Batch, fake: Batch,
              key: jax.Array) -> tuple[TrainState, Metrics]:
  """One discriminator step on a real and a (constant) fake batch."""
  def loss_fn(d_params):
    return variant.loss.discriminator(variant.discriminate, d_params, state.d_batch_stats,
                                      real, fake, key)

  (loss, (d_state, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.d_params)
  updates, opt_state = setup.d_optimizer.update(grads, state.d_opt_state, state.d_params)
  state = state.replace(d_params=optax.apply_updates(state.d_params, updates),
                        d_batch_stats=d_state, d_opt_state=opt_state)
  return state, {"d_loss": loss, **metrics}


def fake_labels(variant: Variant, labels_BA: jax.Array, rate: float, key: jax.Array
                ) -> jax.Array:
  """The label rows fakes are asked for: the real batch's, each with probability `rate`
  one of the conditioned attributes (each alike) forced to +1 or -1 (alike) whatever the
  rest of the row; otherwise G is seldom asked for what is rare in the data (a blond
  man), and never for an attribute against the rest of its row."""
  batch_size = labels_BA.shape[0]
  which_key, value_key, forced_key = jax.random.split(key, 3)
  columns = jnp.array(variant.label_columns, jnp.int32)
  chosen_B = columns[jax.random.randint(which_key, (batch_size,), 0, len(columns))]
  value_B = jnp.where(jax.random.bernoulli(value_key, 0.5, (batch_size,)), 1, -1)
  forced_BA = labels_BA.at[jnp.arange(batch_size), chosen_B].set(value_B.astype(labels_BA.dtype))
  return jnp.where(jax.random.bernoulli(forced_key, rate, (batch_size,))[:, None], forced_BA,
                   labels_BA)


def train_step(setup: GanSetup, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
  """`setup.d_steps` discriminator updates, then one generator update.

  The generator runs forward once per D update; the last forward keeps its VJP so the
  generator update reuses it instead of running G again (same math as the reference,
  where the G step back-propagates through the fake batch the D step just saw). Fakes
  carry the real batch's labels (some with one attribute forced, `fake_labels`). A growing
  variant is set to this step's fade-in, and the real images to its stage's resolution.
  """
  variant = setup.variant.at_step(state.step)
  real = {**batch, "image": variant.real_images(to_model_range(batch["image"]))}
  batch_size = real["image"].shape[0]
  step_key = jax.random.fold_in(state.key, state.step)

  def loss_key(update: int, stream: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(step_key, update), stream)

  labels = batch["label"]
  if setup.forced_attribute_rate:
    labels = fake_labels(variant, labels, setup.forced_attribute_rate,
                         loss_key(0, _FAKE_LABELS_STREAM))

  def generate(g_params, g_state, update: int):
    z = variant.sample_latents(jax.random.fold_in(step_key, update), batch_size)
    return variant.generate(g_params, g_state, z, labels)

  def d_update(state: TrainState, fake_images: jax.Array, update: int):
    fake = {"image": fake_images, "label": labels}
    return _d_update(setup, variant, state,
                     _seen_by_d(setup, real, loss_key(update, _AUGMENT_REAL_STREAM)),
                     _seen_by_d(setup, fake, loss_key(update, _AUGMENT_FAKE_STREAM)),
                     loss_key(update, _D_LOSS_STREAM))

  for i in range(setup.d_steps - 1):
    fake, g_state = generate(state.g_params, state.g_batch_stats, i)
    state, _ = d_update(state.replace(g_batch_stats=g_state), fake, i)

  last = setup.d_steps - 1
  fake, generator_vjp, g_state = jax.vjp(
      lambda g_params: generate(g_params, state.g_batch_stats, last), state.g_params,
      has_aux=True)
  state, metrics = d_update(state.replace(g_batch_stats=g_state), fake, last)

  def g_loss_fn(fake_images):
    fake_seen = _seen_by_d(setup, {"image": fake_images, "label": labels},
                           loss_key(last, _AUGMENT_G_STREAM))
    return variant.loss.generator(variant.discriminate, state.d_params, state.d_batch_stats, real,
                                  fake_seen, loss_key(last, _G_LOSS_STREAM))

  (g_loss, (d_state, g_metrics)), fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
  (g_grads,) = generator_vjp(fake_grad)
  updates, g_opt_state = setup.g_optimizer.update(g_grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, updates)
  state = state.replace(
      step=state.step + 1,
      g_params=g_params,
      g_opt_state=g_opt_state,
      d_batch_stats=d_state,
  )
  if isinstance(state, EmaTrainState):
    state = state.replace(g_ema_params=optax.incremental_update(
        g_params, state.g_ema_params, step_size=1.0 - setup.g_ema_decay))
  metrics = metrics | {"g_loss": g_loss, **g_metrics}
  if variant.schedule:
    metrics |= {"resolution": jnp.float32(variant.image_resolution), "alpha": variant.alpha}
  return state, metrics


def generate_in_model_range(variant: Variant, state: TrainState, z_BZ: jax.Array,
                            labels_BA: jax.Array | None = None) -> jax.Array:
  """float32 samples in [-1, 1] from z (and labels, for a conditional variant), by the
  generator's EMA when the run keeps one. An unconditional variant normalises by the
  batch's own BatchNorm statistics, as the reference DCGAN does when it draws its
  fixed-noise grid; a conditional one by the running averages, so that each face depends
  on its own latent and attributes alone: by its batch's statistics, BatchNorm would
  subtract what every face of the batch is asked alike (a batch all asked for blond hair
  loses most of the blond). Running averages are left untouched. A growing variant (built
  for the state's stage: `Variant.after_steps`) draws with the fade-in of the state's last
  step."""
  variant = variant.at_step(jnp.maximum(state.step - 1, 0))
  x, _ = variant.generate(state.sampling_params, state.g_batch_stats, z_BZ, labels_BA,
                          train=not variant.conditional)
  return x


def generate_images(variant: Variant, state: TrainState, z_BZ: jax.Array,
                    labels_BA: jax.Array | None = None) -> jax.Array:
  """`generate_in_model_range`'s samples as uint8 images."""
  return from_model_range(generate_in_model_range(variant, state, z_BZ, labels_BA))
