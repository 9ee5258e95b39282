"""Turn the CLI's PATH arguments (files, folders, zip archives) into named byte sources.

Names are what admins see (``folder/sub/file.pdf``, ``archive.zip/inner.docx``); they are
display strings only. Zip archives are checked against the bomb limits before any member
is read, and each member is streamed with a size cap.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ingest.safety import check_zip_sizes
from ingest.sandbox import ParseLimits
from qa.errors import HostileFile, InvalidInput


@dataclass(frozen=True)
class Source:
    name: str
    open: Callable[[], IO[bytes]]
    #: set when the source could not even be read (missing path, hostile archive)
    error: str | None = None


def _is_plain_zip(path: Path) -> bool:
    """A zip archive of files, as opposed to an OOXML/ODF document that is a zip inside."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return "[Content_Types].xml" not in names and "mimetype" not in names


def _zip_members(path: Path, prefix: str, limits: ParseLimits) -> Iterator[Source]:
    try:
        with zipfile.ZipFile(path) as zf:
            check_zip_sizes(zf, limits)
            infos = [i for i in zf.infolist() if not i.is_dir()]
    except HostileFile as exc:
        yield Source(prefix, _unreadable, exc.reason)
        return
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        yield Source(prefix, _unreadable, f"unreadable zip archive: {exc}")
        return
    for info in sorted(infos, key=lambda i: i.filename):
        if info.flag_bits & 0x1:
            yield Source(f"{prefix}/{info.filename}", _unreadable, "password-protected")
            continue
        yield Source(f"{prefix}/{info.filename}", _member_opener(path, info.filename))


def _member_opener(path: Path, member: str) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        zf = zipfile.ZipFile(path)
        # The ZipExtFile keeps the archive open; closing it is the reader's job.
        return zf.open(member)

    return open_member


def _unreadable() -> IO[bytes]:
    raise InvalidInput("source is unreadable")


def _file_opener(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: path.open("rb")


def iter_sources(paths: list[Path], limits: ParseLimits) -> Iterator[Source]:
    for root in paths:
        if not root.exists():
            yield Source(str(root), _unreadable, "no such file or folder")
            continue
        if root.is_file():
            yield from _file_sources(root, root.name, limits)
            continue
        base = root.resolve()
        for path in sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink()):
            rel = f"{base.name}/{path.relative_to(base).as_posix()}"
            yield from _file_sources(path, rel, limits)


def _file_sources(path: Path, name: str, limits: ParseLimits) -> Iterator[Source]:
    if _is_plain_zip(path):
        yield from _zip_members(path, name, limits)
    else:
        yield Source(name, _file_opener(path))


def named_file_sources(path: Path, name: str, limits: ParseLimits) -> Iterator[Source]:
    """One uploaded file under the name its client gave it (a zip: one source per member)."""
    return _file_sources(path, name, limits)
