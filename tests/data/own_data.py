"""A small real image collection for the tests of one's own data: scikit-learn's two sample
photographs and three of its handwritten digits, as JPEGs beside a CSV of captions."""

from __future__ import annotations

from pathlib import Path

CAPTIONS = (
    ("china.jpg", "a pagoda temple roof among trees", "test"),
    ("flower.jpg", "a pink flower close up", "test"),
    ("digit0.jpg", "a handwritten digit zero", "train"),
    ("digit1.jpg", "a handwritten digit one", "val"),
    ("digit2.jpg", "a handwritten digit two", "test"),
)


def write_photos(folder: Path) -> Path:
    """The five JPEGs and `captions.csv` (image, text, split) in `folder`; returns the CSV."""
    from PIL import Image
    from sklearn.datasets import load_digits, load_sample_images

    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(("china.jpg", "flower.jpg"), load_sample_images().images):
        Image.fromarray(array).resize((96, 72)).save(folder / name)
    for i, digit in enumerate(load_digits().images[:3]):
        Image.fromarray((digit * 15).astype("uint8")).resize((32, 32)).convert("RGB").save(folder / f"digit{i}.jpg")
    table = folder / "captions.csv"
    table.write_text("image,text,split\n" + "".join(f"{i},{t},{s}\n" for i, t, s in CAPTIONS))
    return table
