"""Procedural scenes for the synthetic M-BEIR: drawing and the texts derived from them.

A scene is one coloured shape of a given size and position on a domain-specific background.
The attribute space is deliberately small (6 shapes x 6 colours x 2 sizes x 3 positions x 2
backgrounds per domain = 432 scenes per domain) so that a tiny CLIP-like model can learn
every rule in minutes on a CPU, while single-attribute perturbations give hard distractors.
Every text (caption, question, passage, modification) is a pure function of the scene, so
tests can regenerate it.
"""

from __future__ import annotations

import io
import math
import random
import zlib
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (30, 160, 60),
    "blue": (35, 75, 225),
    "yellow": (245, 215, 30),
    "purple": (135, 50, 180),
    "orange": (250, 130, 20),
}
SIZES: dict[str, float] = {"small": 0.12, "large": 0.22}  # radius as a fraction of the side
POSITIONS: dict[str, float] = {"left": 0.28, "middle": 0.5, "right": 0.72}  # centre x fraction
# Backgrounds per domain: (name, base RGB, texture). Textures make the four domains distinct.
BACKGROUNDS: dict[str, tuple[tuple[str, tuple[int, int, int], str], ...]] = {
    "news": (("grey", (150, 150, 150), "lines"), ("sepia", (165, 135, 95), "lines")),
    "fashion": (("beige", (236, 222, 196), "gradient"), ("pink", (246, 196, 210), "gradient")),
    "wiki": (("white", (250, 250, 250), "grid"), ("cream", (242, 236, 205), "grid")),
    "common": (("sand", (196, 176, 128), "noise"), ("slate", (88, 98, 110), "noise")),
}
DOMAINS: tuple[str, ...] = tuple(BACKGROUNDS)
ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size", "position", "background")
JITTER = 3  # maximal shape offset in pixels at 64 px (scaled with the image size)


@dataclass(frozen=True)
class Scene:
    """One drawable scene; `dx`/`dy` jitter the shape without changing what the scene shows."""

    domain: str
    shape: str
    colour: str
    size: str
    position: str
    background: str
    dx: int = 0
    dy: int = 0

    @property
    def key(self) -> tuple[str, ...]:
        """The semantic identity: everything except the jitter."""
        return (self.domain, self.shape, self.colour, self.size, self.position, self.background)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _SCENE_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        return cls(**data)

    def with_attribute(self, attribute: str, value: str) -> Scene:
        return replace(self, **{attribute: value})


_SCENE_FIELDS = tuple(f.name for f in fields(Scene))


def attribute_values(domain: str, attribute: str) -> tuple[str, ...]:
    """Possible values of one attribute (backgrounds depend on the domain)."""
    if attribute == "shape":
        return SHAPES
    if attribute == "colour":
        return tuple(COLOURS)
    if attribute == "size":
        return tuple(SIZES)
    if attribute == "position":
        return tuple(POSITIONS)
    if attribute == "background":
        return tuple(name for name, _, _ in BACKGROUNDS[domain])
    raise KeyError(attribute)


@lru_cache(maxsize=None)
def scene_keys(domain: str) -> tuple[tuple[str, ...], ...]:
    """Every semantic scene of a domain, in a fixed order."""
    return tuple(
        (domain, shape, colour, size, position, background)
        for shape in SHAPES
        for colour in COLOURS
        for size in SIZES
        for position in POSITIONS
        for background in attribute_values(domain, "background")
    )


def random_jitter(rng: random.Random) -> tuple[int, int]:
    return rng.randint(-JITTER, JITTER), rng.randint(-JITTER, JITTER)


def scene_from_key(key: tuple[str, ...], rng: random.Random) -> Scene:
    return Scene(*key, *random_jitter(rng))


# ---------------------------------------------------------------------------------------
# Drawing


@lru_cache(maxsize=64)
def _background(domain: str, name: str, size: int) -> Image.Image:
    base, texture = next((rgb, tex) for n, rgb, tex in BACKGROUNDS[domain] if n == name)
    arr = np.empty((size, size, 3), dtype=np.float32)
    arr[:] = base
    step = max(2, size // 16)
    if texture == "lines":  # newsprint: dark horizontal rules
        arr[::step] *= 0.75
    elif texture == "gradient":  # studio backdrop: lighter towards the top
        ramp = np.linspace(1.06, 0.9, size, dtype=np.float32)[:, None, None]
        arr *= ramp
    elif texture == "grid":  # encyclopedia plate: faint grid
        arr[::step * 2] *= 0.86
        arr[:, ::step * 2] *= 0.86
    elif texture == "noise":  # everyday photo: grainy ground, fixed pattern per background
        noise = np.random.default_rng(zlib.crc32(name.encode()) + size).normal(0.0, 18.0, (size, size, 1))
        arr += noise.astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _polygon(
    cx: float, cy: float, radius: float, points: int, inner: float | None, phase: float
) -> list[tuple[float, float]]:
    coords = []
    count = points * 2 if inner is not None else points
    for i in range(count):
        r = radius if inner is None or i % 2 == 0 else radius * inner
        angle = phase + 2 * math.pi * i / count
        coords.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return coords


def render(scene: Scene, size: int = 64) -> Image.Image:
    """Draw the scene as an RGB image of `size` x `size` pixels."""
    image = _background(scene.domain, scene.background, size).copy()
    draw = ImageDraw.Draw(image)
    scale = size / 64
    cx = POSITIONS[scene.position] * size + scene.dx * scale
    cy = 0.5 * size + scene.dy * scale
    r = SIZES[scene.size] * size
    fill = COLOURS[scene.colour]
    if scene.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif scene.shape == "square":
        s = r * 0.85
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif scene.shape == "triangle":
        draw.polygon(_polygon(cx, cy + r * 0.15, r * 1.1, 3, None, -math.pi / 2), fill=fill)
    elif scene.shape == "star":
        draw.polygon(_polygon(cx, cy, r * 1.1, 5, 0.45, -math.pi / 2), fill=fill)
    elif scene.shape == "diamond":
        draw.polygon(_polygon(cx, cy, r * 1.05, 4, None, -math.pi / 2), fill=fill)
    elif scene.shape == "cross":
        w = r * 0.36
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    else:  # pragma: no cover - guarded by SHAPES
        raise ValueError(scene.shape)
    return image


def jpeg_bytes(scene: Scene, size: int = 64, quality: int = 90) -> bytes:
    """The scene as JPEG bytes (no metadata, so identical scenes give identical bytes)."""
    buffer = io.BytesIO()
    render(scene, size).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------
# Texts. Every function is deterministic in its arguments; `variant` picks a template.

_WHERE = {"left": "on the left", "middle": "in the middle", "right": "on the right"}

CAPTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "news": (
        "photo: a {size} {colour} {shape} {where} against a {background} backdrop",
        "news picture of a {colour} {shape}, {size}, placed {where} on {background}",
        "a {size} {colour} {shape} pictured {where} in front of a {background} wall",
    ),
    "common": (
        "a {size} {colour} {shape} {where} on {background} ground",
        "there is a {colour} {shape} {where}, it is {size}, the ground is {background}",
        "{where} of the picture a {size} {colour} {shape} lies on {background}",
        "a {background} surface with a {size} {colour} {shape} {where}",
        "the photo shows one {colour} {shape} of {size} size {where} on {background}",
    ),
    "fashion": (
        "{colour} {shape} print, {size} motif placed {where}, {background} studio backdrop",
        "item with a {size} {colour} {shape} pattern {where} shot on {background}",
        "{size} {shape} design in {colour}, {where}, {background} background",
    ),
    "wiki": (
        "a {size} {colour} {shape} drawn {where} of a {background} page",
        "illustration: {colour} {shape}, {size}, {where}, {background} plate",
    ),
}


def _fields(scene: Scene) -> dict[str, str]:
    return {
        "size": scene.size,
        "colour": scene.colour,
        "shape": scene.shape,
        "where": _WHERE[scene.position],
        "background": scene.background,
    }


def caption(scene: Scene, variant: int = 0, style: str | None = None) -> str:
    """A full description of the scene (all five attributes) in the style of its domain."""
    templates = CAPTION_TEMPLATES[style or scene.domain]
    return templates[variant % len(templates)].format(**_fields(scene))


def captions(scene: Scene, style: str | None = None) -> list[str]:
    """All caption variants of a scene (for tests and MSCOCO's five captions per image)."""
    return [caption(scene, k, style) for k in range(len(CAPTION_TEMPLATES[style or scene.domain]))]


def short_caption(scene: Scene, variant: int = 0) -> str:
    """The text half of an image+text candidate: only shape, colour and background, so the
    image is needed for size and position."""
    templates = (
        "{colour} {shape} on {background}",
        "the {colour} {shape} story, {background} edition",
        "{background} page with a {colour} {shape}",
    )
    return templates[variant % len(templates)].format(**_fields(scene))


QUESTION_TEMPLATES = (
    "which page shows a {size} {colour} {shape} {where} on a {background} page?",
    "what is written about the {size} {colour} {shape} {where} of the {background} page?",
    "where can i read about a {colour} {shape} that is {size} and sits {where} on {background}?",
)
PASSAGE_TEMPLATES = (
    "a {size} {colour} {shape} is drawn {where} of a {background} page. the figure is filled evenly.",
    "this {background} page shows a {colour} {shape}; it is {size} and placed {where}.",
    "the {background} plate holds one {shape}, coloured {colour}, {size}, {where}.",
)


def question(scene: Scene, variant: int = 0) -> str:
    """A WebQA-like question asking for a passage about the scene."""
    return QUESTION_TEMPLATES[variant % len(QUESTION_TEMPLATES)].format(**_fields(scene))


def passage(scene: Scene, variant: int = 0) -> str:
    """A passage describing the scene (the answer to `question`)."""
    return PASSAGE_TEMPLATES[variant % len(PASSAGE_TEMPLATES)].format(**_fields(scene))


def modification(reference: Scene, target: Scene, variant: int = 0, style: str = "common") -> str:
    """A CIRR/FashionIQ-like edit text turning `reference` into `target` (one attribute differs)."""
    (attribute,) = [a for a in ATTRIBUTES if getattr(reference, a) != getattr(target, a)]
    old, new = getattr(reference, attribute), getattr(target, attribute)
    if attribute == "size":
        new_word = "bigger" if new == "large" else "smaller"
        options = (f"make it {new_word}", f"the {reference.shape} should be {new}")
    elif attribute == "position":
        options = (f"move it {_WHERE[new]}", f"put the {reference.shape} {_WHERE[new]}")
    elif attribute == "background":
        options = (f"use a {new} background", f"put it on {new} instead of {old}")
    elif style == "fashion" and attribute == "colour":
        options = (f"is {new} instead of {old}", f"has a {new} tone")
    elif style == "fashion":  # shape
        options = (f"has a {new} print instead of a {old}", f"is a {new} pattern, not {old}")
    elif attribute == "colour":
        options = (f"make it {new}", f"change the colour from {old} to {new}")
    else:  # shape
        options = (f"turn the {old} into a {new}", f"make it a {new} instead")
    return options[variant % len(options)]


def perturb(scene: Scene, attribute: str, rng: random.Random) -> Scene:
    """The scene with one attribute set to a different value (new jitter)."""
    values = [v for v in attribute_values(scene.domain, attribute) if v != getattr(scene, attribute)]
    dx, dy = random_jitter(rng)
    return replace(scene.with_attribute(attribute, rng.choice(values)), dx=dx, dy=dy)


# ---------------------------------------------------------------------------------------
# Wiki entities (OVEN / InfoSeek): an entity is a (shape, colour) emblem with a few facts.


@dataclass(frozen=True)
class Entity:
    """An encyclopedia entity shown as a coloured shape; OVEN asks which one, InfoSeek asks a fact."""

    id: str
    name: str
    shape: str
    colour: str
    year: int
    place: str
    count: int

    def answer(self, question_type: str) -> str:
        return {"Time": str(self.year), "String": self.place, "Numerical": str(self.count)}[question_type]


_SYLLABLES = ("ka", "lo", "mir", "ven", "tas", "ro", "bel", "dun", "sa", "qui", "nor", "pe", "zal", "tor")
QUESTION_TYPES: tuple[str, ...] = ("Time", "String", "Numerical")  # InfoSeek's question types


def make_entities(rng: random.Random, count: int) -> list[Entity]:
    """`count` distinct (shape, colour) entities with made-up names, places and facts."""
    combos = [(shape, colour) for shape in SHAPES for colour in COLOURS]
    rng.shuffle(combos)
    names: list[str] = []
    entities = []
    for index, (shape, colour) in enumerate(combos[:count]):
        while True:
            name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
            place = "".join(rng.choice(_SYLLABLES) for _ in range(2)).capitalize() + rng.choice(("burg", "ton", "ia"))
            if name not in names and place not in names:
                break
        names += [name, place]
        entities.append(Entity(f"E{index:03d}", name, shape, colour, rng.randint(1700, 1990), place, rng.randint(2, 40)))
    return entities


def entity_passage(entity: Entity, variant: int = 0) -> str:
    """An OVEN-style article about the entity; variant 0 states every fact (so it also answers
    any InfoSeek question about the entity)."""
    e = entity
    if variant % 2 == 0:
        return (
            f"{e.name} is an emblem drawn as a {e.colour} {e.shape}. it was first recorded in {e.year} "
            f"in {e.place}, and {e.count} variants of it are known."
        )
    return f"the {e.colour} {e.shape} called {e.name} comes from {e.place}; records date it to {e.year}."


def fact_passage(entity: Entity, question_type: str) -> str:
    """An InfoSeek-style passage that states one fact of the entity."""
    e = entity
    return {
        "Time": f"{e.name}, the {e.colour} {e.shape} emblem, was first recorded in the year {e.year}.",
        "String": f"{e.name}, the {e.colour} {e.shape} emblem, comes from the town of {e.place}.",
        "Numerical": f"there are {e.count} known variants of {e.name}, the {e.colour} {e.shape} emblem.",
    }[question_type]


def recognition_question(entity: Entity, variant: int = 0) -> str:
    """An OVEN-style question: which entity is in the image (sometimes naming its shape)."""
    options = ("what is the name of this emblem?", "which emblem is shown here?", f"what is this {entity.shape} called?")
    return options[variant % len(options)]


def fact_question(question_type: str, variant: int = 0) -> str:
    """An InfoSeek-style question about a fact of the entity in the image."""
    options = {
        "Time": ("in which year was this emblem first recorded?", "when was this first recorded?"),
        "String": ("which town does this emblem come from?", "where does this emblem originate?"),
        "Numerical": ("how many variants of this emblem are known?", "how many versions of this exist?"),
    }[question_type]
    return options[variant % len(options)]
