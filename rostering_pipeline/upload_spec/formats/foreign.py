"""Rostering formats this pipeline does not read, recognised so the LEA is told what it sent
and what to send instead (rather than a list of "missing files").

Signatures, from each format's published samples: Microsoft School Data Sync v1 has
`School.csv`, `Section.csv`, … with headers like `SIS ID`; SDS v2 and v2.1 share OneRoster's
file names but have no manifest.csv (v2.1 adds `roles.csv` with `isPrimary`); Clever's SFTP
files (`schools.csv`, `sections.csv`, `teachers.csv`, …) carry `School_id` and `Section_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

from ..rejections import Rejection, rejection_frame
from .base import ReadOptions, ReadUpload
from .oneroster import ORGS, USERS, has_manifest

SEND_INSTEAD = (
    "Send a OneRoster 1.1 CSV bulk export (with its manifest.csv) from your SIS or rostering "
    "platform, or the native files of the upload spec (campuses.csv, staff.csv, students.csv, "
    "classes.csv, enrollments.csv)."
)


def _names(files: Mapping[str, bytes]) -> set[str]:
    return {PurePosixPath(n.replace("\\", "/")).name.lower() for n in files}


def _header(files: Mapping[str, bytes], file_name: str) -> list[str]:
    """The first line of a file, split on commas (enough to tell formats apart)."""
    for name, data in files.items():
        if PurePosixPath(name.replace("\\", "/")).name.lower() == file_name:
            first = data.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0]
            text = first.decode("utf-8", errors="replace").strip()
            return [c.strip().strip('"') for c in text.split(",")]
    return []


def recognise(files: Mapping[str, bytes]) -> str | None:
    """The name of the foreign format these files are, or None."""
    if has_manifest(files):
        return None  # OneRoster's, whatever its file names
    names = _names(files)
    if {"school.csv", "section.csv"} <= names or {"student.csv", "teacher.csv"} <= names:
        return "Microsoft School Data Sync (SDS) v1 CSV"
    if {ORGS.file_name, USERS.file_name} <= names:  # OneRoster's names: SDS v2, or OneRoster
        if "isPrimary" in _header(files, "roles.csv"):
            return "Microsoft School Data Sync (SDS) v2.1 CSV"
        if "activeDirectoryMatchId" in _header(files, "users.csv") or "roles.csv" not in names:
            if "status" not in _header(files, "users.csv"):
                return "Microsoft School Data Sync (SDS) v2 CSV"
        return None
    clever_files = {"schools.csv", "sections.csv", "teachers.csv"}
    clever_headers = {"School_id", "Section_id", "Student_id", "Teacher_id"}
    headers = {c for n in ("students.csv", "enrollments.csv") for c in _header(files, n)}
    if len(clever_files & names) >= 2 or (clever_headers & headers and "campuses.csv" not in names):
        return "Clever SFTP CSV"
    return None


class ForeignFormat:
    """Refuses an upload in a known format this pipeline does not read, naming the format."""

    name = "foreign"
    report_note = None
    file_names = ()

    def claims(self, files: Mapping[str, bytes]) -> bool:
        return recognise(files) is not None

    def read(self, files: Mapping[str, bytes], options: ReadOptions) -> ReadUpload:
        what = recognise(files)
        refusal = Rejection(
            ", ".join(sorted(files)),
            None,
            None,
            f"the upload is in {what} format, which this pipeline does not read",
            what,
            SEND_INSTEAD,
            "upload",
        )
        return ReadUpload(self.name, None, rejection_frame([refusal]))
