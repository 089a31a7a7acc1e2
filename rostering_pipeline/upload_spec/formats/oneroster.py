"""OneRoster 1.1 CSV bulk sets (loose files or a .zip), read for the same rules as the native
format.

Most SIS export OneRoster, so an LEA can send what it already sends other platforms. The set
is read file by file with the native reader (same encodings, quoting and header matching),
checked against its manifest, mapped onto the native tables (`oneroster_tables`), judged by
the native rules, and its rejections renamed to OneRoster's files, lines and columns
(`oneroster_sources`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import PurePosixPath

import polars as pl

from ..archive import ZipLimits, read_zip
from ..files import UploadFile
from ..reading import read_upload_file
from ..rejections import Rejection, UploadRejected, rejection_frame
from ..rules import ONEROSTER
from .base import ReadOptions, ReadUpload, more_than_one_file
from .oneroster_sources import name_sources
from .oneroster_tables import STATE_ID_METADATA, to_native

DEFAULT_CLASS_TYPES: tuple[str, ...] = ("homeroom",)
VERSION = "1.1"
_STATUS = ("status", "dateLastModified")

MANIFEST = UploadFile(
    "manifest", "manifest.csv", True, ("propertyName",), ("propertyName", "value")
)
ORGS = UploadFile(
    "orgs", "orgs.csv", True, ("sourcedId",),
    ("sourcedId", "name", "type", "identifier"), (*_STATUS, "parentSourcedId"),
)  # fmt: skip
USERS = UploadFile(
    "users", "users.csv", True, ("sourcedId",),
    ("sourcedId", "orgSourcedIds", "role", "givenName", "familyName", "email", "grades"),
    (*_STATUS, "enabledUser", "username", "userIds", "middleName", "identifier", "sms",
     "phone", "agentSourcedIds", "password", STATE_ID_METADATA),
)  # fmt: skip
DEMOGRAPHICS = UploadFile(
    "demographics", "demographics.csv", False, ("sourcedId",), ("sourcedId", "birthDate"),
    (*_STATUS, "sex", "americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
     "nativeHawaiianOrOtherPacificIslander", "white", "demographicRaceTwoOrMoreRaces",
     "hispanicOrLatinoEthnicity", "countryOfBirthCode", "stateOfBirthAbbreviation",
     "cityOfBirth", "publicSchoolResidenceStatus"),
)  # fmt: skip
CLASSES = UploadFile(
    "classes", "classes.csv", True, ("sourcedId",),
    ("sourcedId", "title", "classType", "schoolSourcedId"),
    (*_STATUS, "grades", "courseSourcedId", "classCode", "location", "subjects",
     "termSourcedIds", "subjectCodes", "periods", "resources"),
)  # fmt: skip
ENROLLMENTS = UploadFile(
    "enrollments", "enrollments.csv", True, ("sourcedId",),
    ("classSourcedId", "userSourcedId", "role"),
    (*_STATUS, "sourcedId", "schoolSourcedId", "primary", "beginDate", "endDate"),
)  # fmt: skip
ACADEMIC_SESSIONS = UploadFile(
    "academicSessions", "academicSessions.csv", False, ("sourcedId",), ("sourcedId",),
    (*_STATUS, "schoolYear", "title", "type", "startDate", "endDate", "parentSourcedId"),
)  # fmt: skip
COURSES = UploadFile(
    "courses", "courses.csv", False, ("sourcedId",), ("sourcedId",),
    (*_STATUS, "schoolYearSourcedId", "title", "courseCode", "grades", "orgSourcedId",
     "subjects", "subjectCodes", "resources"),
)  # fmt: skip
USED: tuple[UploadFile, ...] = (
    ORGS, USERS, DEMOGRAPHICS, CLASSES, ENROLLMENTS, ACADEMIC_SESSIONS, COURSES,
)  # fmt: skip
#: OneRoster 1.1 files this pipeline has no use for: not read, named in a note.
UNUSED = {
    f"{name.lower()}.csv"
    for name in ("categories", "classResources", "courseResources", "lineItems", "resources",
                 "results")
}  # fmt: skip
#: Files some exporters add to a 1.1 set from OneRoster 1.2 (or SDS): not read, named in a note.
LATER_VERSION = {f"{name.lower()}.csv" for name in ("roles", "userProfiles", "userResources")}
NOTE = (
    "This upload is a OneRoster CSV set, so problems are shown at OneRoster's file, line and "
    "column. The rules are the upload spec's, in its words: a *campus* is an org of type "
    "school (campus_id is its identifier), *students* and *staff* are users by role, "
    "birth_date and gender come from demographics.csv, and a class's teacher_id is its "
    "primary teacher in enrollments.csv (failing that, its first teacher enrollment)."
)
BULK_FIX = (
    "Export a full (bulk) OneRoster set: every upload is a complete snapshot, and a delta "
    "cannot show who has left."
)


class OneRosterFormat:
    """OneRoster 1.1 CSV bulk sets, loose or zipped (UPLOAD_SPEC.md, "OneRoster 1.1")."""

    name = "OneRoster 1.1"
    report_note = NOTE
    file_names = tuple(spec.file_name for spec in (MANIFEST, *USED))

    def claims(self, files: Mapping[str, bytes]) -> bool:
        """A manifest.csv or a .zip (which must hold one) marks a OneRoster upload, and so do
        OneRoster's own orgs.csv and users.csv without one (refused: no manifest)."""
        names = {_base(n) for n in files}
        return (
            has_manifest(files)
            or any(n.endswith(".zip") for n in names)
            or {ORGS.file_name, USERS.file_name} <= names
        )

    def read(self, files: Mapping[str, bytes], options: ReadOptions) -> ReadUpload:
        notes: list[Rejection] = []
        try:
            loose = _unzipped(files, options.zip_limits, notes)
            read = _read(loose, notes)
        except UploadRejected as rejected:
            return ReadUpload(self.name, None, rejection_frame(notes + rejected.rejections))
        mapped = to_native(read, options)
        return ReadUpload(
            self.name,
            mapped.tables,
            rejection_frame(notes + mapped.notes),
            mapped.rejected_rows,
            ONEROSTER,
            partial(name_sources, tables=mapped.tables, rejected_rows=mapped.rejected_rows),
        )


def _unzipped(files: Mapping[str, bytes], limits: ZipLimits, notes: list[Rejection]) -> dict:
    zips = sorted(n for n in files if _base(n).endswith(".zip"))
    if not zips:
        return dict(files)
    if len(zips) > 1:
        raise _fault(zips[1], None, "the upload holds more than one .zip", zips[1],
                     "Send one .zip with the whole OneRoster set.")  # fmt: skip
    members = read_zip(zips[0], files[zips[0]], limits)
    if not any(_base(n) == MANIFEST.file_name for n in members):
        raise _fault(
            zips[0], None, "the .zip has no manifest.csv", None,
            "A .zip must be a OneRoster 1.1 CSV bulk export with its manifest.csv; "
            "send native uploads as loose CSV files.",
        )  # fmt: skip
    for name in sorted(set(files) - {zips[0]}):
        notes.append(_ignored(name, f"the upload is read from {zips[0]}"))
    return members


def _read(files: dict[str, bytes], notes: list[Rejection]) -> dict[str, pl.DataFrame]:
    """Each used file read as text; every fault of the set is collected before refusing it.
    A set of another OneRoster version is refused for that alone."""
    by_base = {_base(n): n for n in files}
    read_bases = {spec.file_name.lower() for spec in (MANIFEST, *USED)}
    twice = [
        more_than_one_file(names)
        for base in sorted(read_bases)
        if len(names := [n for n in files if _base(n) == base]) > 1
    ]
    if twice:
        raise UploadRejected(twice)
    if MANIFEST.file_name not in by_base:
        raise _fault(
            MANIFEST.file_name, None, "manifest.csv is missing: the set's version and files "
            "cannot be known", None, "Export the full OneRoster 1.1 CSV bulk set: the "
            "manifest.csv the export writes beside orgs.csv and users.csv is part of it.",
        )  # fmt: skip
    faults: list[Rejection] = []
    manifest = _read_one(MANIFEST, by_base, files, notes)
    modes = _check_manifest(manifest, faults)
    if faults:
        raise UploadRejected(faults)
    read: dict[str, pl.DataFrame] = {}
    for spec in USED:
        key = spec.file_name.lower()
        mode, line = modes.get(f"file.{spec.entity.lower()}", (None, None))
        if mode == "delta":
            faults.append(_rejection(MANIFEST.file_name, line, "value",
                                     f"{spec.file_name} is a delta file; only bulk files are "
                                     "read", "delta", BULK_FIX))  # fmt: skip
        elif mode not in (None, "bulk", "absent"):
            faults.append(_rejection(MANIFEST.file_name, line, "value",
                                     f"file.{spec.entity} must be bulk or absent", mode,
                                     "Set it to bulk and export the full file."))  # fmt: skip
        elif key not in by_base or mode == "absent":
            if spec.required:
                faults.append(_missing(spec, mode))
        else:
            try:
                read[spec.file_name] = _read_one(spec, by_base, files, notes)
            except UploadRejected as rejected:
                faults += rejected.rejections
    for base, name in sorted(by_base.items()):
        if base in UNUSED:
            notes.append(_unread(name, "OneRoster file this pipeline has no use for"))
        elif base in LATER_VERSION:
            notes.append(_unread(name, "file of OneRoster 1.2 (or SDS), not of a 1.1 set"))
        elif base not in {s.file_name.lower() for s in (MANIFEST, *USED)}:
            notes.append(_ignored(name, "it is not a file of a OneRoster set"))
    if faults:
        raise UploadRejected(faults)
    return read


def _read_one(
    spec: UploadFile, by_base: dict[str, str], files: dict[str, bytes], notes: list[Rejection]
) -> pl.DataFrame:
    name = by_base[spec.file_name.lower()]
    read = read_upload_file(spec, files[name], display_name=PurePosixPath(name).name)
    # OneRoster allows extension columns (metadata.*): only truly unknown ones are noted.
    notes += [w for w in read.warnings if not (w.column or "").lower().startswith("metadata.")]
    return read.frame


def _check_manifest(manifest: pl.DataFrame, faults: list[Rejection]) -> dict:
    """`propertyName` → (value in lower case, line); the version must be 1.1."""
    modes = {
        name.lower(): ((value or "").strip().lower(), line)
        for name, value, line in manifest.select("propertyName", "value", "_line").rows()
    }
    version, line = modes.get("oneroster.version", (None, None))
    if version != VERSION:
        what = f"a OneRoster {version} set" if version else "a set that gives no version"
        faults.append(
            _rejection(
                MANIFEST.file_name,
                line,
                "value",
                f"oneroster.version must be 1.1: this is {what}",
                version,
                "Export OneRoster version 1.1 CSV bulk files (most SIS and rostering "
                "platforms offer 1.1 beside 1.2); this pipeline reads 1.1 sets.",
            )  # fmt: skip
        )
    return modes


def _missing(spec: UploadFile, mode: str | None) -> Rejection:
    said = " (manifest.csv says it is absent)" if mode == "absent" else ""
    return _rejection(
        spec.file_name, None, None, f"required file is missing{said}", None,
        f"Include {spec.file_name} in the export and list it as "
        f"file.{spec.entity}=bulk in manifest.csv.",
    )  # fmt: skip


def _unread(name: str, what: str) -> Rejection:
    return Rejection(name, None, None, f"not read: a {what}", None, "Nothing to fix.", "note")


def _ignored(name: str, why: str) -> Rejection:
    return Rejection(
        name, None, None, "file is not part of the upload", None,
        f"This file was ignored: {why}.", "warning",
    )  # fmt: skip


def _rejection(
    file: str, line: int | None, column: str | None, rule: str, value: str | None, fix: str
) -> Rejection:
    return Rejection(file, line, column, rule, value, fix, "upload")


def _fault(file: str, line: int | None, rule: str, value: str | None, fix: str) -> UploadRejected:
    return UploadRejected([_rejection(file, line, None, rule, value, fix)])


def has_manifest(files: Mapping[str, bytes]) -> bool:
    """Whether the upload has OneRoster's manifest.csv, which makes it a OneRoster bulk set
    whatever else it holds (the foreign formats that share OneRoster's file names have none)."""
    return any(_base(n) == MANIFEST.file_name for n in files)


def _base(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).name.lower()
