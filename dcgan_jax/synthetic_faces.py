"""Procedural RGB faces: the built-in dataset, so a fresh machine trains with no download.

Each face is drawn from soft-edged shapes on a background gradient: shoulders and neck,
optional long hair behind the head, ears, an elliptical face with shading at its rim,
hair on top (short, fringe, long or none), eyes (white, iris, pupil), eyebrows, nose,
mouth (smiling, neutral or open) and optional glasses. Face shape, size, position, skin
tone, hair colour and style, eye colour and background all vary. Image i depends only on
(seed, i): its parameters come from `np.random.default_rng((seed, i))`.
"""

import functools

import numpy as np

SKIN_TONES = np.array([
    [255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 144, 102],
    [160, 110, 75], [120, 80, 52], [88, 58, 38],
], np.float32)
HAIR_COLOURS = np.array([
    [20, 16, 14], [60, 38, 24], [110, 70, 40], [205, 170, 100], [160, 70, 30],
    [170, 170, 170], [235, 225, 200],
], np.float32)
EYE_COLOURS = np.array([[70, 45, 25], [40, 90, 150], [70, 110, 60], [100, 80, 50]], np.float32)
HAIR_STYLES = ("short", "fringe", "long", "bald")


@functools.lru_cache(maxsize=8)
def _grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates in [-1, 1], y growing downwards."""
  c = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution * 2 - 1
  return np.meshgrid(c, c)


class _Canvas:
  """An RGB float image that soft-edged shapes are painted onto."""

  def __init__(self, resolution: int, background: np.ndarray):
    self.x, self.y = _grid(resolution)
    self.pixel = 2.0 / resolution
    self.image = np.broadcast_to(background, (resolution, resolution, 3)).copy()

  def coverage(self, signed_distance: np.ndarray) -> np.ndarray:
    """About one pixel of anti-aliased edge: 1 inside, 0 outside."""
    return np.clip(0.5 - signed_distance / self.pixel, 0.0, 1.0)

  def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    normalised = np.sqrt(((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2)
    return self.coverage((normalised - 1.0) * min(rx, ry))

  def paint(self, mask: np.ndarray, colour: np.ndarray) -> None:
    self.image += mask[..., None] * (colour - self.image)


def _vary(rng: np.random.Generator, colour: np.ndarray, spread: float) -> np.ndarray:
  return np.clip(colour + rng.normal(0, spread, 3), 0, 255).astype(np.float32)


def render_face(seed: int, index: int, resolution: int) -> np.ndarray:
  """Face number `index` of the set `seed`: uint8 (resolution, resolution, 3)."""
  rng = np.random.default_rng((seed, index))
  top, bottom = rng.uniform(40, 230, 3), rng.uniform(40, 230, 3)
  t = _grid(resolution)[1][..., None] * 0.5 + 0.5
  canvas = _Canvas(resolution, np.float32(0))
  canvas.image = ((1 - t) * top + t * bottom).astype(np.float32)

  skin = _vary(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 8)
  hair = _vary(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 10)
  style = HAIR_STYLES[rng.choice(4, p=[0.4, 0.25, 0.25, 0.1])]
  cx, cy = rng.uniform(-0.08, 0.08), rng.uniform(-0.12, 0.02)
  rx = rng.uniform(0.36, 0.46)
  ry = rx * rng.uniform(1.15, 1.4)

  # Shoulders and neck first: the head is painted over them.
  canvas.paint(canvas.ellipse(cx, cy + ry + 0.55, 0.85, 0.42), _vary(rng, rng.uniform(30, 220, 3), 0))
  neck = canvas.coverage(np.maximum(np.abs(canvas.x - cx) - rx * 0.45,
                                    np.abs(canvas.y - (cy + ry * 0.9)) - ry * 0.35))
  canvas.paint(neck, skin * 0.85)
  if style == "long":
    # Hair falls behind the shoulders on both sides, never across the chin.
    chin_gap = canvas.coverage(np.maximum(rx * 0.6 - np.abs(canvas.x - cx), cy + ry * 0.5 - canvas.y))
    canvas.paint(canvas.ellipse(cx, cy + ry * 0.3, rx * 1.3, ry * 1.15) * (1 - chin_gap), hair * 0.85)
  for side in (-1, 1):
    canvas.paint(canvas.ellipse(cx + side * rx * 0.97, cy + ry * 0.05, rx * 0.16, ry * 0.2),
                 skin * 0.92)

  face = canvas.ellipse(cx, cy, rx, ry)
  radial = np.sqrt(((canvas.x - cx) / rx) ** 2 + ((canvas.y - cy) / ry) ** 2)
  shading = (1.0 - 0.25 * np.clip(radial, 0, 1) ** 3)[..., None]
  canvas.image += face[..., None] * (skin * shading - canvas.image)

  if style != "bald":
    hairline = cy - ry * rng.uniform(0.35, 0.55)
    cap = canvas.ellipse(cx, cy - ry * 0.08, rx * 1.08, ry * 1.02)
    above = canvas.coverage(canvas.y - (hairline + 0.12 * ((canvas.x - cx) / rx) ** 2))
    if style == "fringe":
      above = np.maximum(above, canvas.coverage(canvas.y - (cy - ry * 0.2)) *
                         canvas.coverage(np.abs(canvas.x - cx) - rx * 0.8))
    canvas.paint(cap * above, hair)

  eye_dx, eye_y = rx * rng.uniform(0.36, 0.46), cy - ry * rng.uniform(0.05, 0.15)
  eye_r = rx * rng.uniform(0.15, 0.2)
  iris = _vary(rng, EYE_COLOURS[rng.integers(len(EYE_COLOURS))], 10)
  gaze = rng.uniform(-0.3, 0.3) * eye_r
  brow_lift, brow_tilt = rng.uniform(0.25, 0.4) * ry, rng.uniform(-0.04, 0.04)
  for side in (-1, 1):
    ex = cx + side * eye_dx
    canvas.paint(canvas.ellipse(ex, eye_y, eye_r, eye_r * 0.6), np.float32([245, 245, 240]))
    canvas.paint(canvas.ellipse(ex + gaze, eye_y, eye_r * 0.5, eye_r * 0.5), iris)
    canvas.paint(canvas.ellipse(ex + gaze, eye_y, eye_r * 0.22, eye_r * 0.22), np.float32([10, 10, 10]))
    brow_y = eye_y - brow_lift + side * brow_tilt
    canvas.paint(canvas.ellipse(ex, brow_y, eye_r * 1.3, eye_r * 0.28), hair * 0.8)

  canvas.paint(canvas.ellipse(cx, cy + ry * 0.18, rx * 0.08, ry * 0.17), skin * 0.85)
  for side in (-1, 1):
    canvas.paint(canvas.ellipse(cx + side * rx * 0.06, cy + ry * 0.32, rx * 0.04, ry * 0.025),
                 skin * 0.55)

  mouth_y, mouth_w = cy + ry * rng.uniform(0.48, 0.56), rx * rng.uniform(0.28, 0.4)
  lips = _vary(rng, np.float32([170, 70, 70]), 15) * (0.6 + 0.4 * skin.mean() / 255)
  expression = rng.choice(3, p=[0.5, 0.3, 0.2])
  if expression == 2:  # open mouth
    canvas.paint(canvas.ellipse(cx, mouth_y, mouth_w * 0.7, ry * 0.08), lips)
    canvas.paint(canvas.ellipse(cx, mouth_y, mouth_w * 0.5, ry * 0.045), np.float32([60, 20, 20]))
  else:  # a smile bends the lip line up at its corners; neutral keeps it straight
    curve = (0.25 if expression == 0 else 0.03) * ry
    lip_line = mouth_y + curve * (1 - ((canvas.x - cx) / mouth_w) ** 2)
    lip = canvas.coverage(np.maximum(np.abs(canvas.y - lip_line) - ry * 0.025,
                                     np.abs(canvas.x - cx) - mouth_w))
    canvas.paint(lip, lips)

  if rng.random() < 0.25:
    frame = _vary(rng, np.float32([30, 30, 30]), 20)
    lens_r = eye_r * 1.7
    for side in (-1, 1):
      ring = np.abs(np.sqrt((canvas.x - cx - side * eye_dx) ** 2 + (canvas.y - eye_y) ** 2) - lens_r)
      canvas.paint(canvas.coverage(ring - canvas.pixel * 0.6), frame)
    bridge = np.maximum(np.abs(canvas.x - cx) - (eye_dx - lens_r),
                        np.abs(canvas.y - eye_y) - canvas.pixel * 0.6)
    canvas.paint(canvas.coverage(bridge), frame)

  return np.clip(np.round(canvas.image), 0, 255).astype(np.uint8)


class SyntheticFaces:
  """Random-access source of `num_images` faces for grain: `faces[i]` is uint8 (R, R, 3)."""

  def __init__(self, seed: int, num_images: int, resolution: int):
    self.seed, self.num_images, self.resolution = seed, num_images, resolution

  def __len__(self) -> int:
    return self.num_images

  def __getitem__(self, index: int) -> np.ndarray:
    if not 0 <= index < self.num_images:
      raise IndexError(f"face {index} out of range [0, {self.num_images})")
    return render_face(self.seed, int(index), self.resolution)

  def __repr__(self) -> str:
    return (f"SyntheticFaces(seed={self.seed}, num_images={self.num_images}, "
            f"resolution={self.resolution})")
