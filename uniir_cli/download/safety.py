"""Which tar members `uniir download` may write: refuses what could leave the destination.

Refused, naming the member: absolute names, ``..`` components, over-long names, device files,
FIFOs and other special members, and links (symbolic or hard) whose target is absolute or
resolves outside the destination. Python's tar ``data`` filter does the link and path checks
where it exists (3.10.12+, 3.11.4+, 3.12+); on older interpreters `own_data_filter` does the
same with realpath checks, so extraction is never less safe than with the filter.
"""

from __future__ import annotations

import copy
import os
import tarfile
from pathlib import Path

from uniir_cli.errors import DataError

# Longer names are refused: path resolution that gives up on very long paths has been used to
# slip links past tar filters; M-BEIR's names are short.
_MAX_NAME = 1024


class ArchiveError(DataError):
    """The archive is corrupt, truncated, or contains a member that is refused."""


def _refuse(member: tarfile.TarInfo, reason: str) -> ArchiveError:
    return ArchiveError(f"refusing archive member {member.name!r}: {reason}")


def safe_member_name(member: tarfile.TarInfo) -> str:
    """The member's normalised relative name; refuses absolute paths and `..` components."""
    name = member.name.replace("\\", "/")
    if len(name) > _MAX_NAME or len(member.linkname) > _MAX_NAME:
        raise ArchiveError(f"refusing archive member {member.name[:80]!r}...: name or link target longer than {_MAX_NAME} characters")
    if name.startswith("/") or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise _refuse(member, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(member, "'..' path component")
    return "/".join(parts)


def confined(root: Path, path: Path, what: str) -> None:
    """Refuse a file or folder under `root` that is, or goes through, a link to a place outside
    `root`: uniir reads nothing from outside the folder it was given."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if not _inside(real, real_root):
        raise DataError(
            f"{path} leads outside {what} {root} (to {real}); uniir reads nothing from outside it: "
            "replace the link by the file itself"
        )


def _inside(path: str, real_dest: str) -> bool:
    real = os.path.realpath(path)
    return real == real_dest or real.startswith(real_dest.rstrip(os.sep) + os.sep)


def _data_mode(member: tarfile.TarInfo) -> int | None:
    """Permissions as the ``data`` filter sets them: no high bits, no group/other write."""
    if member.mode is None or not (member.isreg() or member.islnk()):
        return None  # folders and links: the extractor applies no mode
    mode = member.mode & 0o755
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600


def own_data_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """The ``data`` filter's checks, for interpreters without `tarfile.data_filter`."""
    real_dest = os.path.realpath(dest)
    name = safe_member_name(member)
    if not _inside(os.path.join(real_dest, name), real_dest):
        raise _refuse(member, "path outside the destination")
    if member.issym() or member.islnk():
        link = member.linkname.replace("\\", "/")
        if link.startswith("/") or os.path.isabs(link) or (len(link) > 1 and link[1] == ":"):
            raise _refuse(member, "link to an absolute path")
        base = os.path.dirname(name) if member.issym() else ""  # hard links are relative to the archive root
        if not _inside(os.path.join(real_dest, base, link), real_dest):
            raise _refuse(member, "link pointing outside the destination")
    checked = copy.copy(member)
    checked.mode = _data_mode(member)
    checked.uid = checked.gid = None  # type: ignore[assignment]
    checked.uname = checked.gname = None  # type: ignore[assignment]
    return checked


def _python_data_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    reasons = {
        "AbsoluteLinkError": "link to an absolute path",
        "LinkOutsideDestinationError": "link pointing outside the destination",
        "OutsideDestinationError": "path outside the destination",
        "AbsolutePathError": "absolute path",
        "SpecialFileError": "special file",
    }
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError as exc:
        raise _refuse(member, reasons.get(type(exc).__name__, str(exc))) from None


def checked_member(member: tarfile.TarInfo, dest: str) -> tuple[str, tarfile.TarInfo]:
    """(normalised name, member as it may be written under `dest`), or `ArchiveError` naming it."""
    name = safe_member_name(member)
    if member.ischr() or member.isblk() or member.isfifo():
        raise _refuse(member, "device file" if (member.ischr() or member.isblk()) else "FIFO")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise _refuse(member, f"unsupported member type {member.type!r}")
    if getattr(tarfile, "data_filter", None) is None:  # Python < 3.10.12 / 3.11.4
        return name, own_data_filter(member, dest)
    return name, _python_data_filter(member, dest)
