"""Procedural RGB faces: the built-in dataset, so a fresh machine trains with no download.

Each image is a head and shoulders on a plain or gradient background, painted from
soft-edged shapes: shoulders and neck, long hair falling behind the head, ears, an
elliptical face shaded darker at its rim and on one side, hair on top (short, fringe,
long or none), eyes (white, iris, pupil), eyebrows, nose, mouth (smiling, neutral or
open) and glasses. Face shape, size and position, skin tone, hair colour and style, eye
colour, expression and colours of background and clothes all vary.

Each face is labelled with the attributes it is painted with, under CelebA's names
(`ATTRIBUTE_NAMES`, in CelebA's order) and as CelebA stores them: int8, +1 present and
-1 absent. So a conditional model trains on these faces as on CelebA: `SyntheticFaces[i]`
is {"image": uint8 (R, R, 3), "label": int8 (A,)}, like an example of prepared CelebA.

Image i of a set and its label depend only on (seed, i): its parameters come from
`np.random.default_rng((seed, i))`, so any face can be rendered alone, in any order, by
any process. The parameters do not depend on the resolution either: one face rendered at
16, 32 or 64 pixels is the same face. Edges are anti-aliased by the fraction of each
pixel a shape covers, and every shape is evaluated only inside its bounding box.
"""

import bisect
import dataclasses
import functools
import itertools
import math

import numpy as np

SKIN_TONES = np.array([
    [255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 144, 102],
    [160, 110, 75], [120, 80, 52], [88, 58, 38],
], np.float32)
HAIR_COLOURS = np.array([
    [20, 16, 14], [60, 38, 24], [110, 70, 40], [205, 170, 100], [160, 70, 30],
    [170, 170, 170], [235, 225, 200],
], np.float32)
# The CelebA attribute of each HAIR_COLOURS row, row for row: CelebA has no auburn.
HAIR_COLOUR_ATTRIBUTES = ("Black_Hair", "Brown_Hair", "Brown_Hair", "Blond_Hair", None,
                          "Gray_Hair", "Blond_Hair")
PALE_SKIN_INDEX = int(SKIN_TONES.sum(-1).argmax())  # the lightest tone is CelebA's Pale_Skin
EYE_COLOURS = np.array([[70, 45, 25], [40, 90, 150], [70, 110, 60], [100, 80, 50]], np.float32)
HAIR_STYLES = {"short": 0.4, "fringe": 0.25, "long": 0.25, "bald": 0.1}  # style: how often
EXPRESSIONS = {"smile": 0.5, "neutral": 0.3, "open": 0.2}
EYE_WHITE = np.float32([245, 245, 240])
PUPIL = np.float32([10, 10, 10])
MOUTH_INSIDE = np.float32([60, 20, 20])
TEETH = np.float32([235, 230, 215])
# The CelebA attributes that the painter draws, in CelebA's order (a subsequence of
# list_attr_celeba.txt's header), so labels line up with CelebA's columns of these names.
ATTRIBUTE_NAMES = ("Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses",
                   "Gray_Hair", "Mouth_Slightly_Open", "Pale_Skin", "Smiling")

Window = tuple[slice, slice]  # the rows and columns of the image a shape can touch
Shape = tuple[Window, np.ndarray]  # a window and the shape's coverage, 0 to 1, of its pixels


@dataclasses.dataclass(frozen=True)
class FaceParameters:
  """Everything random about one face.

  Colours are float32 RGB in [0, 255]. Lengths are in image units: the image spans
  [-1, 1] in x (rightwards) and y (downwards), so they hold at any resolution.
  """
  background_top: np.ndarray
  background_bottom: np.ndarray
  clothes: np.ndarray
  skin: np.ndarray
  skin_index: int  # the row of SKIN_TONES that `skin` varies
  hair: np.ndarray
  hair_index: int  # the row of HAIR_COLOURS that `hair` varies
  iris: np.ndarray
  lips: np.ndarray
  glasses: np.ndarray | None  # the frame's colour, or None for no glasses
  hair_style: str  # a key of HAIR_STYLES
  expression: str  # a key of EXPRESSIONS
  centre_x: float  # the centre and radii of the face's ellipse
  centre_y: float
  radius_x: float
  radius_y: float
  light_side: float  # how much brighter the face gets towards +x; negative: towards -x
  shoulder_width: float
  has_ears: bool
  hair_length: float  # how far long hair falls below the face's centre
  hairline: float  # how far the hairline sits above the face's centre
  eye_spacing: float  # from the face's centre line to each eye
  eye_height: float  # above the face's centre
  eye_radius: float
  gaze: float  # the irises' shift to the right
  brow_lift: float  # from the eyes up to the eyebrows
  brow_tilt: float  # how much lower the right eyebrow sits than the left
  mouth_height: float  # below the face's centre
  mouth_width: float  # half the mouth's width
  frame_width: float  # the glasses' frame thickness

  @property
  def head(self) -> tuple[float, float, float, float]:
    """The face ellipse's centre and radii, (x, y, rx, ry): what every feature hangs on."""
    return self.centre_x, self.centre_y, self.radius_x, self.radius_y


def _vary(rng: np.random.Generator, colour: np.ndarray, spread: float) -> np.ndarray:
  return np.clip(colour + rng.normal(0, spread, 3), 0, 255).astype(np.float32)


def _pick(rng: np.random.Generator, palette: np.ndarray,
          spread: float) -> tuple[int, np.ndarray]:
  """A random row of the palette: its index, and its colour varied by `spread`."""
  index = int(rng.integers(len(palette)))
  return index, _vary(rng, palette[index], spread)


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
  # A Python float keeps the float32 image arithmetic in float32, and is quicker in it.
  return float(rng.uniform(low, high))


def _choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
  cumulative = list(itertools.accumulate(weights.values()))
  return list(weights)[bisect.bisect(cumulative, rng.random() * cumulative[-1])]


def sample_face(rng: np.random.Generator) -> FaceParameters:
  """Draws one face's parameters."""
  background_top = rng.uniform(40, 230, 3).astype(np.float32)
  plain = rng.random() < 0.35
  background_bottom = background_top if plain else _vary(rng, background_top, 60)
  skin_index, skin = _pick(rng, SKIN_TONES, 8)
  # Lips are a reddened, darkened skin: pink on light skin, brown on dark.
  lips = np.clip(skin * np.float32([0.8, 0.5, 0.5]) + rng.normal(0, 8, 3), 0, 255)
  radius_x = _uniform(rng, 0.36, 0.46)
  radius_y = radius_x * _uniform(rng, 1.15, 1.4)
  eye_radius = radius_x * _uniform(rng, 0.15, 0.2)
  # The draws stay in this order, before those among the arguments below: a change of
  # order would change every face of every seed.
  clothes = rng.uniform(30, 220, 3).astype(np.float32)
  hair_index, hair = _pick(rng, HAIR_COLOURS, 10)
  _, iris = _pick(rng, EYE_COLOURS, 10)
  return FaceParameters(
      background_top=background_top,
      background_bottom=background_bottom,
      clothes=clothes,
      skin=skin,
      skin_index=skin_index,
      hair=hair,
      hair_index=hair_index,
      iris=iris,
      lips=lips.astype(np.float32),
      glasses=_vary(rng, np.float32([30, 30, 30]), 20) if rng.random() < 0.25 else None,
      hair_style=_choose(rng, HAIR_STYLES),
      expression=_choose(rng, EXPRESSIONS),
      centre_x=_uniform(rng, -0.08, 0.08),
      centre_y=_uniform(rng, -0.12, 0.02),
      radius_x=radius_x,
      radius_y=radius_y,
      light_side=_uniform(rng, -0.1, 0.1),
      shoulder_width=_uniform(rng, 0.75, 0.95),
      has_ears=bool(rng.random() < 0.85),
      hair_length=radius_y * _uniform(rng, 1.1, 1.6),
      hairline=radius_y * _uniform(rng, 0.35, 0.55),
      eye_spacing=radius_x * _uniform(rng, 0.36, 0.46),
      eye_height=radius_y * _uniform(rng, 0.05, 0.15),
      eye_radius=eye_radius,
      gaze=_uniform(rng, -0.3, 0.3) * eye_radius,
      brow_lift=radius_y * _uniform(rng, 0.25, 0.4),
      brow_tilt=_uniform(rng, -0.04, 0.04),
      mouth_height=radius_y * _uniform(rng, 0.48, 0.56),
      mouth_width=radius_x * _uniform(rng, 0.28, 0.4),
      frame_width=radius_x * _uniform(rng, 0.04, 0.07),
  )


def face_at(seed: int, index: int) -> FaceParameters:
  """The parameters of face number `index` of the set `seed`."""
  return sample_face(np.random.default_rng((seed, index)))


def face_attributes(face: FaceParameters) -> np.ndarray:
  """The face's label: int8 (len(ATTRIBUTE_NAMES),), +1 where it shows the attribute."""
  bald = face.hair_style == "bald"
  # A bald head shows no hair, so CelebA would give it no hair colour.
  hair_colour = None if bald else HAIR_COLOUR_ATTRIBUTES[face.hair_index]
  present = {
      "Bald": bald,
      "Bangs": face.hair_style == "fringe",
      "Eyeglasses": face.glasses is not None,
      "Mouth_Slightly_Open": face.expression == "open",
      "Pale_Skin": face.skin_index == PALE_SKIN_INDEX,
      "Smiling": face.expression == "smile",
  }
  present.update({name: name == hair_colour for name in HAIR_COLOUR_ATTRIBUTES if name})
  return np.array([1 if present[name] else -1 for name in ATTRIBUTE_NAMES], np.int8)


@functools.lru_cache(maxsize=16)
def _pixel_centres(resolution: int) -> np.ndarray:
  centres = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution * 2 - 1
  centres.flags.writeable = False  # shared by every image of this resolution
  return centres


def _unit_clip(values: np.ndarray) -> np.ndarray:
  # Two ufuncs cost less than np.clip on arrays this small.
  return np.minimum(np.maximum(values, 0.0), 1.0)


def _ellipse_distance(dx: np.ndarray, dy: np.ndarray, rx: float, ry: float) -> np.ndarray:
  """Signed distance to an ellipse's rim, exact on its short axis and smaller elsewhere."""
  return (np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2) - 1.0) * min(rx, ry)


class _Canvas:
  """An RGB float image that anti-aliased shapes are painted onto, each in its own window."""

  def __init__(self, resolution: int, background: np.ndarray):
    self.resolution = resolution
    self.pixel = 2.0 / resolution
    self.image = background

  def window(self, left: float, top: float, right: float, bottom: float) -> Window:
    """The pixels within a pixel of the box: all that a shape inside it can touch."""
    def span(low: float, high: float) -> slice:
      start = math.floor((low + 1) / self.pixel) - 1
      stop = math.ceil((high + 1) / self.pixel) + 1
      return slice(min(max(start, 0), self.resolution), min(max(stop, 0), self.resolution))
    return span(top, bottom), span(left, right)

  def coordinates(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """A row of x and a column of y pixel centres: they broadcast to the window."""
    centres = _pixel_centres(self.resolution)
    return centres[window[1]][None, :], centres[window[0]][:, None]

  def coverage(self, signed_distance: np.ndarray) -> np.ndarray:
    """The part of each pixel inside a shape, given the distance to its edge."""
    return _unit_clip(0.5 - signed_distance / self.pixel)

  def band(self, offset: np.ndarray, half_width: float) -> np.ndarray:
    """The part of each pixel on a line: a line thinner than a pixel stays thin but faint."""
    half_pixel = 0.5 * self.pixel
    overlap = (np.minimum(offset + half_pixel, half_width)
               - np.maximum(offset - half_pixel, -half_width))
    return _unit_clip(overlap / self.pixel)

  def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> Shape:
    # The edge's soft zone reaches further along the long axis, as the distance there is
    # underestimated.
    grow = 1.0 + 0.5 * self.pixel / min(rx, ry)
    window = self.window(cx - rx * grow, cy - ry * grow, cx + rx * grow, cy + ry * grow)
    x, y = self.coordinates(window)
    return window, self.coverage(_ellipse_distance(x - cx, y - cy, rx, ry))

  def box(self, cx: float, cy: float, half_width: float, half_height: float) -> Shape:
    window = self.window(cx - half_width, cy - half_height, cx + half_width, cy + half_height)
    x, y = self.coordinates(window)
    return window, self.coverage(np.maximum(np.abs(x - cx) - half_width,
                                            np.abs(y - cy) - half_height))

  def paint(self, shape: Shape, colour: np.ndarray) -> None:
    window, coverage = shape
    region = self.image[window]
    region += coverage[..., None] * (colour - region)

  def to_uint8(self) -> np.ndarray:
    return np.clip(np.round(self.image), 0, 255).astype(np.uint8)


def _background(face: FaceParameters, resolution: int) -> np.ndarray:
  t = _pixel_centres(resolution)[:, None, None] * 0.5 + 0.5
  gradient = (1 - t) * face.background_top + t * face.background_bottom
  return np.repeat(gradient, resolution, axis=1)


def _paint_body(canvas: _Canvas, face: FaceParameters) -> None:
  cx, cy, rx, ry = face.head
  canvas.paint(canvas.ellipse(cx, cy + ry + 0.55, face.shoulder_width, 0.42), face.clothes)
  # Darker than the face: the chin shades the neck.
  canvas.paint(canvas.box(cx, cy + ry * 0.9, rx * 0.45, ry * 0.35), face.skin * 0.8)


def _paint_long_hair(canvas: _Canvas, face: FaceParameters) -> None:
  """Straight hair behind the head, falling past the chin on both sides of the neck."""
  cx, cy, rx, ry = face.head
  half_width, bottom = rx * 1.25, cy + face.hair_length
  window = canvas.window(cx - half_width, cy - ry * 1.1, cx + half_width, bottom)
  x, y = canvas.coordinates(window)
  crown = _ellipse_distance(x - cx, y - cy, half_width, ry * 1.1)
  sides = np.maximum(np.abs(x - cx) - half_width, np.maximum(cy - y, y - bottom))
  neck_gap = np.maximum(np.abs(x - cx) - rx * 0.55, cy + ry * 0.5 - y)
  canvas.paint((window, canvas.coverage(np.maximum(np.minimum(crown, sides), -neck_gap))),
               face.hair * 0.85)


def _paint_ears(canvas: _Canvas, face: FaceParameters) -> None:
  cx, cy, rx, ry = face.head
  for side in (-1, 1):
    canvas.paint(canvas.ellipse(cx + side * rx * 0.97, cy + ry * 0.05, rx * 0.16, ry * 0.2),
                 face.skin * 0.9)


def _paint_head(canvas: _Canvas, face: FaceParameters) -> None:
  """The face's oval, darker towards its rim and on the side away from the light."""
  cx, cy, rx, ry = face.head
  window, inside = canvas.ellipse(cx, cy, rx, ry)
  x, y = canvas.coordinates(window)
  across = (x - cx) / rx
  rim = np.minimum(np.sqrt(across ** 2 + ((y - cy) / ry) ** 2), 1.0) ** 3
  shading = 1.0 - 0.25 * rim + face.light_side * across
  canvas.paint((window, inside), face.skin * shading[..., None])


def _paint_top_hair(canvas: _Canvas, face: FaceParameters) -> None:
  """Hair over the top of the head down to a curved hairline, or to a fringe at the brows."""
  cx, cy, rx, ry = face.head
  window, cap = canvas.ellipse(cx, cy - ry * 0.08, rx * 1.08, ry * 1.02)
  x, y = canvas.coordinates(window)
  across = (x - cx) / rx
  above_hairline = canvas.coverage(y - (cy - face.hairline + 0.12 * across ** 2))
  if face.hair_style == "fringe":
    # A slightly ragged lower edge reads as strands.
    fringe_edge = cy - ry * 0.2 + 0.015 * np.abs(np.sin(across * 9.0))
    fringe = canvas.coverage(np.maximum(y - fringe_edge, np.abs(x - cx) - rx * 0.8))
    above_hairline = np.maximum(above_hairline, fringe)
  canvas.paint((window, cap * above_hairline), face.hair)


def _eye_centres(face: FaceParameters) -> list[tuple[float, float]]:
  eye_y = face.centre_y - face.eye_height
  return [(face.centre_x + side * face.eye_spacing, eye_y) for side in (-1, 1)]


def _paint_eyes(canvas: _Canvas, face: FaceParameters) -> None:
  r = face.eye_radius
  for side, (ex, ey) in zip((-1, 1), _eye_centres(face)):
    canvas.paint(canvas.ellipse(ex, ey, r, r * 0.6), EYE_WHITE)
    canvas.paint(canvas.ellipse(ex + face.gaze, ey, r * 0.5, r * 0.5), face.iris)
    canvas.paint(canvas.ellipse(ex + face.gaze, ey, r * 0.22, r * 0.22), PUPIL)
    brow_y = ey - face.brow_lift + side * face.brow_tilt
    canvas.paint(canvas.ellipse(ex, brow_y, r * 1.3, r * 0.28), face.hair * 0.8)


def _paint_nose(canvas: _Canvas, face: FaceParameters) -> None:
  cx, cy, rx, ry = face.head
  canvas.paint(canvas.ellipse(cx, cy + ry * 0.18, rx * 0.08, ry * 0.17), face.skin * 0.85)
  for side in (-1, 1):
    canvas.paint(canvas.ellipse(cx + side * rx * 0.06, cy + ry * 0.32, rx * 0.04, ry * 0.025),
                 face.skin * 0.55)


def _paint_mouth(canvas: _Canvas, face: FaceParameters) -> None:
  cx, ry = face.centre_x, face.radius_y
  mouth_y, width = face.centre_y + face.mouth_height, face.mouth_width
  if face.expression == "open":
    canvas.paint(canvas.ellipse(cx, mouth_y, width * 0.7, ry * 0.08), face.lips)
    window, inside = canvas.ellipse(cx, mouth_y, width * 0.5, ry * 0.045)
    canvas.paint((window, inside), MOUTH_INSIDE)
    _, y = canvas.coordinates(window)
    upper_teeth = canvas.coverage(y - (mouth_y - ry * 0.015))
    canvas.paint((window, inside * upper_teeth), TEETH)
    return
  # A smile lifts the corners of the lip line; a neutral mouth keeps it nearly straight.
  curve = (0.25 if face.expression == "smile" else 0.03) * ry
  thickness = ry * 0.025
  window = canvas.window(cx - width, mouth_y - thickness, cx + width, mouth_y + curve + thickness)
  x, y = canvas.coordinates(window)
  # Flat past the corners, so the soft ends stay inside the window.
  lip_line = mouth_y + curve * (1 - np.minimum(((x - cx) / width) ** 2, 1.0))
  lip = canvas.band(y - lip_line, thickness) * canvas.coverage(np.abs(x - cx) - width)
  canvas.paint((window, lip), face.lips)


def _paint_glasses(canvas: _Canvas, face: FaceParameters) -> None:
  """Round lenses joined by a bridge, with arms back to the ears."""
  lens_r, half_width = face.eye_radius * 1.7, face.frame_width * 0.5
  (left_x, eye_y), (right_x, _) = _eye_centres(face)
  for ex in (left_x, right_x):
    reach = lens_r + half_width
    window = canvas.window(ex - reach, eye_y - reach, ex + reach, eye_y + reach)
    x, y = canvas.coordinates(window)
    rim = canvas.band(np.sqrt((x - ex) ** 2 + (y - eye_y) ** 2) - lens_r, half_width)
    canvas.paint((window, rim), face.glasses)
  cx, rx = face.centre_x, face.radius_x
  for span_left, span_right in ((left_x + lens_r, right_x - lens_r),
                                (cx - rx, left_x - lens_r), (right_x + lens_r, cx + rx)):
    middle, half_span = 0.5 * (span_left + span_right), 0.5 * (span_right - span_left)
    window = canvas.window(span_left, eye_y - half_width, span_right, eye_y + half_width)
    x, y = canvas.coordinates(window)
    bar = canvas.band(y - eye_y, half_width) * canvas.coverage(np.abs(x - middle) - half_span)
    canvas.paint((window, bar), face.glasses)


def paint_face(face: FaceParameters, resolution: int) -> np.ndarray:
  """Renders a face's parameters as uint8 (resolution, resolution, 3), back to front."""
  canvas = _Canvas(resolution, _background(face, resolution))
  _paint_body(canvas, face)
  if face.hair_style == "long":
    _paint_long_hair(canvas, face)
  if face.has_ears:
    _paint_ears(canvas, face)
  _paint_head(canvas, face)
  if face.hair_style != "bald":
    _paint_top_hair(canvas, face)
  _paint_eyes(canvas, face)
  _paint_nose(canvas, face)
  _paint_mouth(canvas, face)
  if face.glasses is not None:
    _paint_glasses(canvas, face)
  return canvas.to_uint8()


def render_face(seed: int, index: int, resolution: int) -> np.ndarray:
  """Face number `index` of the set `seed`: uint8 (resolution, resolution, 3)."""
  return paint_face(face_at(seed, index), resolution)


class SyntheticFaces:
  """Random-access source of `num_images` labelled faces for grain: `faces[i]` is
  {"image": uint8 (R, R, 3), "label": int8 (A,)}, the label in `attribute_names` order."""

  def __init__(self, seed: int, num_images: int, resolution: int):
    self.seed, self.num_images, self.resolution = seed, num_images, resolution
    self.attribute_names = list(ATTRIBUTE_NAMES)

  def __len__(self) -> int:
    return self.num_images

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < self.num_images:
      raise IndexError(f"face {index} out of range [0, {self.num_images})")
    face = face_at(self.seed, int(index))
    return {"image": paint_face(face, self.resolution), "label": face_attributes(face)}

  def __repr__(self) -> str:
    return (f"SyntheticFaces(seed={self.seed}, num_images={self.num_images}, "
            f"resolution={self.resolution})")
