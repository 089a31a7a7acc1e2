"""The native format of UPLOAD_SPEC.md: one CSV file per table, read as it is."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

import polars as pl

from ..files import BY_FILE_NAME, ENTITIES, UPLOAD_FILES, UploadFile
from ..reading import LINE, read_upload_file
from ..rejections import Rejection, UploadRejected, rejection_frame
from .base import ReadOptions, ReadUpload, more_than_one_file

WORKBOOK_SUFFIXES = (".xlsx", ".xls", ".xlsm", ".ods", ".numbers")


class NativeFormat:
    name = "native"
    report_note = None
    file_names = tuple(spec.file_name for spec in UPLOAD_FILES)

    def claims(self, files: Mapping[str, bytes]) -> bool:
        """Whatever no other format claims is read as native (and told what is missing)."""
        return True

    def read(self, files: Mapping[str, bytes], options: ReadOptions) -> ReadUpload:
        found, notes = _match_files(files)
        raw: dict[str, pl.DataFrame] = {}
        rejections: list[pl.DataFrame] = [rejection_frame(notes)]
        for spec in UPLOAD_FILES:
            matches = found.get(spec.file_name, [])
            if len(matches) > 1:
                rejections.append(rejection_frame([more_than_one_file([n for n, _ in matches])]))
                continue
            if not matches:
                if spec.required:
                    rejections.append(rejection_frame([_missing_file(spec, files)]))
                else:
                    raw[spec.entity] = empty_table(spec)
                continue
            [(name, data)] = matches
            try:
                read = read_upload_file(spec, data, display_name=name)
            except UploadRejected as rejected:
                rejections.append(rejection_frame(rejected.rejections))
                continue
            rejections.append(rejection_frame(read.warnings))
            raw[spec.entity] = read.frame
        tables = raw if len(raw) == len(ENTITIES) else None
        return ReadUpload(self.name, tables, pl.concat(rejections))


def empty_table(spec: UploadFile) -> pl.DataFrame:
    return pl.DataFrame(schema={**{c: pl.String for c in spec.columns}, LINE: pl.Int64})


def _match_files(
    files: Mapping[str, bytes],
) -> tuple[dict[str, list[tuple[str, bytes]]], list[Rejection]]:
    """Spec file names match case-insensitively (so one table may be matched by several
    files); other files are reported and ignored."""
    found: dict[str, list[tuple[str, bytes]]] = {}
    notes: list[Rejection] = []
    for name, data in sorted(files.items()):
        spec = BY_FILE_NAME.get(name.strip().lower())
        if spec is not None:
            found.setdefault(spec.file_name, []).append((name, data))
            continue
        fix = "This file is not part of the upload format and was ignored."
        if name.lower().endswith(WORKBOOK_SUFFIXES):
            fix = "Spreadsheet workbooks are not read: export each sheet as a CSV file instead."
        notes.append(
            Rejection(name, None, None, "file is not part of the upload", None, fix, "warning")
        )
    return found, notes


def _missing_file(spec: UploadFile, files: Mapping[str, bytes]) -> Rejection:
    stem = PurePosixPath(spec.file_name).stem
    fix = f"Include {spec.file_name} in every upload; each upload is a full snapshot."
    for name in files:
        if PurePosixPath(name.lower()).stem == stem and name.lower().endswith(WORKBOOK_SUFFIXES):
            fix = f"{name} is a spreadsheet workbook: export it as CSV and upload {spec.file_name}."
    return Rejection(
        spec.file_name, None, None, "required file is missing", None, fix, "upload", spec.entity
    )
