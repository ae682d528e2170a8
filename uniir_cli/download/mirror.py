"""`uniir download mbeir --from-dir PATH`: M-BEIR from a local clone or mirror.

Many users already have the dataset (a git-lfs clone, a copy on shared storage). Its layout
is checked (metadata folders, no git-lfs pointers, all four parts), metadata files are linked
(or copied), and the image parts are extracted the same way as Hub downloads; an already
extracted mirror has its image folders linked (or copied) instead of read again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from uniir_cli import atomic
from uniir_cli.data import benchmark as bm
from uniir_cli.download.archive import extract_parts
from uniir_cli.download.disk import EXTRACT_RESERVE, check_free_space, folder_bytes
from uniir_cli.download.files import (
    IMAGE_PARTS,
    JOURNAL_DIR,
    METADATA_DIRS,
    SELECTED_FOLDERS_NOTE,
    MbeirReport,
    images_estimate,
    images_need_label,
    is_lfs_pointer,
    known_part,
    place_file,
    walk_metadata,
)
from uniir_cli.download.parts import Part, ProgressCallback
from uniir_cli.download.safety import confined
from uniir_cli.download.selection import Selection
from uniir_cli.errors import DataError


def _mirror_metadata(mirror: Path, selection: Selection) -> dict[str, Path]:
    missing_dirs = [d for d in METADATA_DIRS if not (mirror / d).is_dir()]
    if missing_dirs:
        raise DataError(
            f"--from-dir {mirror} does not look like an M-BEIR clone: folder {missing_dirs[0]}/ is missing "
            f"(expected {', '.join(d + '/' for d in METADATA_DIRS)})"
        )
    metadata = walk_metadata(mirror, selection)
    for path in metadata.values():
        confined(mirror, path, "the mirror")
    pointers = [rel for rel, path in metadata.items() if is_lfs_pointer(path)]
    if pointers:
        raise DataError(
            f"{mirror / pointers[0]} is a git-lfs pointer, not the data ({len(pointers)} such file(s)); "
            f"run `git lfs pull` in {mirror} first"
        )
    return metadata


def _mirror_parts(mirror: Path) -> list[Part]:
    """The four parts of the mirror, checked to be present and real (not git-lfs pointers)."""
    present = [n for n in IMAGE_PARTS if (mirror / n).is_file()]
    absent = [n for n in IMAGE_PARTS if n not in present]
    if absent:
        raise DataError(f"--from-dir {mirror} lacks image part {absent[0]} (has {', '.join(present)}); complete the mirror first")
    parts = []
    for name in IMAGE_PARTS:
        if is_lfs_pointer(mirror / name):
            raise DataError(f"{mirror / name} is a git-lfs pointer, not the data; run `git lfs pull --include='mbeir_images.tar.gz.part-*'` in {mirror}")
        size, sha = known_part(name, None)  # a mirror is a copy of the main revision
        parts.append(Part(name, mirror / name, sha, size))
    return parts


def _placed_marker(journal_dir: Path, name: str) -> Path:
    return journal_dir / "folders" / f"{name}.json"


def _is_placed(source: Path, target: Path, journal_dir: Path) -> bool:
    """A folder counts as in place only when complete: a link to the mirror's folder, or a copy
    whose marker (written after the copy was renamed into place) names that folder."""
    if target.is_symlink():
        return target.exists() and os.path.samefile(target, source)
    marker = _placed_marker(journal_dir, source.name)
    if not (target.is_dir() and marker.is_file()):
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("source") == str(source.resolve())
    except (OSError, ValueError):
        return False


def _folders_to_link(src_root: Path, dst_root: Path, selection: Selection, journal_dir: Path, force: bool) -> list[Path]:
    """The extracted mirror's image folders the selection wants that are not completely in place."""
    wanted = selection.image_folders()
    return [
        folder for folder in sorted(p for p in src_root.iterdir() if p.is_dir())
        if (wanted is None or folder.name in wanted) and (force or not _is_placed(folder, dst_root / folder.name, journal_dir))
    ]


def from_mirror(
    mirror: Path,
    data_dir: Path,
    selection: Selection,
    *,
    want_meta: bool,
    want_images: bool,
    copy: bool,
    check_disk: bool,
    force: bool,
    progress: ProgressCallback | None,
) -> MbeirReport:
    """Use a local clone/mirror: verify its layout, link (or copy) metadata, extract its parts."""
    if not mirror.is_dir():
        raise DataError(f"--from-dir {mirror} is not a folder")
    report = MbeirReport(data_dir, f"local mirror {mirror}")
    same = data_dir.exists() and os.path.samefile(mirror, data_dir)
    journal_dir = data_dir / JOURNAL_DIR
    metadata = _mirror_metadata(mirror, selection) if want_meta else {}
    parts: list[Part] = []
    extracted = mirror / bm.IMAGES_DIR
    to_link: list[Path] | None = None
    if want_images:
        if extracted.is_dir() and not same:
            to_link = _folders_to_link(extracted, data_dir / bm.IMAGES_DIR, selection, journal_dir, force)  # no need to read 169 GB again
        elif any((mirror / n).is_file() for n in IMAGE_PARTS):
            parts = _mirror_parts(mirror)
        elif not extracted.is_dir():
            raise DataError(
                f"--from-dir {mirror} has neither the image parts ({IMAGE_PARTS[0]}..{IMAGE_PARTS[-1][-2:]}) nor an "
                f"extracted {bm.IMAGES_DIR}/ folder; use --what metadata, or complete the mirror"
            )
    if parts and selection.image_folders() is not None:
        report.notes.append(SELECTED_FOLDERS_NOTE)
    if check_disk:
        meta_bytes = sum(p.stat().st_size for p in metadata.values()) if copy and not same else 0
        sizes = [p.path.stat().st_size for p in parts if p.path is not None]
        image_bytes = images_estimate(sizes, journal_dir, selection) if parts else 0
        copied = sum(folder_bytes(f) for f in to_link or ()) if copy else 0  # copytree writes them all
        label = "files in --data-dir" + (images_need_label(selection) if parts else "") + (" (image folders to copy)" if copied else "")
        check_free_space({data_dir: (meta_bytes + image_bytes + copied, label)})
    data_dir.mkdir(parents=True, exist_ok=True)
    for rel, path in metadata.items():
        report.metadata[rel] = "present" if same else place_file(path, data_dir / rel, copy=copy, fallback="symlink")
    if want_meta:
        report.missing = [f for f in selection.expected_files() if f not in report.metadata]
    if parts:
        report.images = extract_parts(
            parts, data_dir, folders=selection.image_folders(), journal_dir=journal_dir, progress=progress, force=force,
            reserve=EXTRACT_RESERVE if check_disk else None,
        )
    elif to_link is not None:
        report.image_folders_linked = _link_image_folders(extracted, data_dir / bm.IMAGES_DIR, selection, to_link, copy, journal_dir)
    return report


def _link_image_folders(
    src_root: Path, dst_root: Path, selection: Selection, to_link: list[Path], copy: bool, journal_dir: Path
) -> list[str]:
    """An already extracted mirror: symlink (or copy) its image folders into place. A copy goes
    to a temporary name first and replaces whatever incomplete folder was there; its marker is
    written last, so an interrupted copy is redone by the next run."""
    dst_root.mkdir(parents=True, exist_ok=True)
    wanted = selection.image_folders()
    done = [
        f"{p.name} (present)" for p in sorted(src_root.iterdir())
        if p.is_dir() and (wanted is None or p.name in wanted) and p not in to_link
    ]
    for folder in to_link:
        _check_links(src_root, folder)
        target = dst_root / folder.name
        marker = _placed_marker(journal_dir, folder.name)
        marker.unlink(missing_ok=True)
        tmp = dst_root / f".{folder.name}.uniir-tmp"
        atomic.remove(tmp)  # left by a killed copy
        if copy:
            shutil.copytree(folder, tmp, symlinks=False)
        else:
            tmp.symlink_to(folder.resolve(), target_is_directory=True)
        atomic.remove(target)
        os.replace(tmp, target)
        if copy:
            atomic.write_json(marker, {"source": str(folder.resolve()), "placed": "copy"})
        done.append(folder.name)
    return sorted(done)


def _check_links(src_root: Path, folder: Path) -> None:
    """Every link in an image folder about to be linked or copied stays inside the mirror,
    and none is a folder link (which could loop)."""
    confined(src_root.parent, folder, "the mirror")
    for dirpath, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            path = Path(dirpath) / name
            if path.is_symlink():
                if path.is_dir():
                    raise DataError(f"{path} is a link to a folder ({os.path.realpath(path)}); uniir does not follow "
                                    "folder links in image folders (they can loop): replace it by the folder itself")
                confined(src_root.parent, path, "the mirror")
