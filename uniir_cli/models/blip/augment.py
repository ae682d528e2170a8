"""BLIP's RandomAugment(N=2, M=5) for training images, re-implemented on PIL (spec 5.4).

N ops are drawn uniformly (with replacement) from upstream's list; each is applied with
probability 0.5. Magnitudes at level M of 10, as upstream: enhance factor (M/10)*1.8+0.1
(= 1.0 at M=5, i.e. Brightness/Sharpness are no-ops there), shear (M/10)*0.3, translate
(M/10)*10 px, rotate (M/10)*30 degrees, each with a random sign; the fill is grey 128.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

MAX_LEVEL = 10.0
OPS = ("Identity", "AutoContrast", "Equalize", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
FILL = (128, 128, 128)


def _signed(value: float, rng: random.Random) -> float:
    return value if rng.random() >= 0.5 else -value


def apply_op(image: Any, name: str, level: float, rng: random.Random) -> Any:
    """One op at `level` (0..10) on an RGB PIL image."""
    from PIL import Image, ImageEnhance, ImageOps

    if name == "Identity":
        return image
    if name == "AutoContrast":
        return ImageOps.autocontrast(image)
    if name == "Equalize":
        return ImageOps.equalize(image)
    if name in ("Brightness", "Sharpness"):
        factor = (level / MAX_LEVEL) * 1.8 + 0.1
        return getattr(ImageEnhance, name)(image).enhance(factor)
    affine: dict[str, Callable[[float], tuple[float, ...]]] = {
        "ShearX": lambda v: (1, v, 0, 0, 1, 0),
        "ShearY": lambda v: (1, 0, 0, v, 1, 0),
        "TranslateX": lambda v: (1, 0, v, 0, 1, 0),
        "TranslateY": lambda v: (1, 0, 0, 0, 1, v),
    }
    if name in ("ShearX", "ShearY"):
        value = _signed((level / MAX_LEVEL) * 0.3, rng)
    elif name in ("TranslateX", "TranslateY"):
        value = _signed((level / MAX_LEVEL) * 10.0, rng)
    elif name == "Rotate":
        return image.rotate(_signed((level / MAX_LEVEL) * 30.0, rng), resample=Image.BILINEAR, fillcolor=FILL)
    else:
        raise ValueError(f"unknown RandomAugment op {name!r}")
    return image.transform(image.size, Image.AFFINE, affine[name](value), resample=Image.BILINEAR, fillcolor=FILL)


class RandomAugment:
    """Picklable transform: N random ops at magnitude M, each kept with probability 0.5."""

    def __init__(self, n: int = 2, m: int = 5, ops: tuple[str, ...] = OPS) -> None:
        self.n, self.m, self.ops = n, m, ops

    def __call__(self, image: Any) -> Any:
        """Seeded from Python's global RNG, as torchvision's transforms draw from torch's:
        training seeds both per sample (`train_pairs.seeded_global_rngs`)."""
        rng = random.Random(random.getrandbits(64))
        for name in [rng.choice(self.ops) for _ in range(self.n)]:
            if rng.random() < 0.5:
                continue
            image = apply_op(image, name, float(self.m), rng)
        return image
