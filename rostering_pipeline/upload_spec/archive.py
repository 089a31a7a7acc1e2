"""Reading the files out of an uploaded .zip without trusting it.

A zip is only ever read in memory, member by member and by basename: nothing is extracted
to disk, so a member named `../../etc/passwd` is just `passwd`. Its total size and member
count are capped before anything is inflated, and the cap is enforced again while
inflating, so a zip bomb or a lying header costs at most the limit.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath

from .rejections import Rejection, UploadRejected

ZIP_MAGIC = b"PK\x03\x04"
#: What a damaged or hostile zip makes the standard library raise.
ZIP_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error, EOFError, OSError,
    ValueError, NotImplementedError, RuntimeError,
)  # fmt: skip
IGNORED_MEMBERS = ("__MACOSX/", ".DS_Store", "Thumbs.db")


@dataclass(frozen=True)
class ZipLimits:
    """How much a zip may unpack to: 2 GB and 100 files by default."""

    max_total_bytes: int = 2 * 1024**3
    max_members: int = 100


DEFAULT_LIMITS = ZipLimits()


def read_zip(name: str, data: bytes, limits: ZipLimits) -> dict[str, bytes]:
    """The zip's files by basename; any fault of the zip as a whole raises `UploadRejected`."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not _ignored(m)]
    except ZIP_ERRORS as error:
        raise _fault(
            name, "file is not a readable .zip", str(error), "Create the .zip again."
        ) from None
    if len(members) > limits.max_members:
        raise _fault(
            name,
            f"the .zip holds more than {limits.max_members} files",
            str(len(members)),
            "Zip only the OneRoster CSV files and manifest.csv.",
        )
    declared = sum(m.file_size for m in members)
    if declared > limits.max_total_bytes:
        raise _fault(name, _too_big(limits), f"{declared:,} bytes", _SPLIT)
    files: dict[str, bytes] = {}
    member_of: dict[str, str] = {}  # lower-case basename → the member read under it
    total = 0
    for member in members:
        base = _basename(member.filename)
        if base.lower().endswith(".zip"):
            raise _fault(
                name, "the .zip contains another .zip", member.filename, "Put the CSV files "
                "themselves in one .zip; do not zip a zip."
            )  # fmt: skip
        if member.flag_bits & 0x1:
            raise _fault(
                name, "the .zip is password-protected", member.filename, "Zip the files "
                "without a password; the SFTP connection already encrypts them."
            )  # fmt: skip
        earlier = member_of.get(base.lower())
        if earlier is not None:
            raise _fault(
                name,
                "the .zip holds two files of the same name",
                f"{earlier}, {member.filename}",
                "Send one file per table: names are matched ignoring capitals and folders, "
                "so these are the same table. Keep one of them in the .zip.",
            )
        content = _inflate(name, archive, member, limits.max_total_bytes - total)
        if content.startswith(ZIP_MAGIC) and not base.lower().endswith(".xlsx"):
            raise _fault(
                name,
                "the .zip contains another .zip",
                member.filename,
                "Put the CSV files themselves in one .zip; do not zip a zip.",
            )
        total += len(content)
        files[base] = content
        member_of[base.lower()] = member.filename
    return files


def _basename(member_name: str) -> str:
    return PurePosixPath(member_name.replace("\\", "/")).name


def _inflate(name: str, archive: zipfile.ZipFile, member: zipfile.ZipInfo, budget: int) -> bytes:
    try:
        with archive.open(member) as stream:
            content = stream.read(min(member.file_size, budget) + 1)
    except ZIP_ERRORS as error:
        raise _fault(
            name,
            "a file in the .zip cannot be read",
            f"{member.filename}: {error}",
            "Create the .zip again with standard (deflate) compression.",
        ) from None
    if len(content) > member.file_size or len(content) > budget:
        raise _fault(name, "the .zip unpacks to more than it declares", member.filename, _SPLIT)
    return content


def _ignored(member: zipfile.ZipInfo) -> bool:
    return member.is_dir() or any(part in member.filename for part in IGNORED_MEMBERS)


def _too_big(limits: ZipLimits) -> str:
    return f"the .zip unpacks to more than {limits.max_total_bytes:,} bytes"


_SPLIT = "Send the files unzipped, or check that the .zip holds only the OneRoster CSV files."


def _fault(name: str, rule: str, value: str | None, fix: str) -> UploadRejected:
    return UploadRejected([Rejection(name, None, None, rule, value, fix, "upload")])
