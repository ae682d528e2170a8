"""Which image paths `uniir serve` resolves (`safe_image_file`), on a tree of its own."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from uniir_cli.serve.images import safe_image_file


def test_paths_that_leave_the_tree_are_refused_and_a_linked_image_folder_is_not(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "data", tmp_path / "other-disk"
    (elsewhere / "coco").mkdir(parents=True)
    root.mkdir()
    Image.new("RGB", (4, 4)).save(elsewhere / "coco" / "a.jpg")
    Image.new("RGB", (4, 4)).save(tmp_path / "outside.jpg")
    (root / "mbeir_images").symlink_to(elsewhere)  # the usual layout: images on another disk
    (elsewhere / "coco" / "out.jpg").symlink_to(tmp_path / "outside.jpg")
    (root / "notes.txt").write_text("not an image")
    roots = [root, root / "mbeir_images"]
    assert safe_image_file(roots, "mbeir_images/coco/a.jpg") == (elsewhere / "coco" / "a.jpg").resolve()
    assert safe_image_file(roots, "./mbeir_images/coco/a.jpg") is not None
    for bad in ["mbeir_images/coco/out.jpg", "../outside.jpg", "mbeir_images/../mbeir_images/coco/a.jpg",
                str(tmp_path / "outside.jpg"), "/etc/passwd", "mbeir_images//coco/a.jpg", "mbeir_images\\coco\\a.jpg",
                "notes.txt", "mbeir_images/coco/missing.jpg", "", "mbeir_images/coco/a.jpg\x00.png"]:
        assert safe_image_file(roots, bad) is None, bad
    assert safe_image_file([], "mbeir_images/coco/a.jpg") is None
