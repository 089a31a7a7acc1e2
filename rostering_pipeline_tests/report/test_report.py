"""The sync report reads well for a registrar: the outcome first, counts per kind of record,
then each problem once with what to do and every place it occurs."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import polars as pl
import pytest

from rostering_pipeline.decision import EntityDiff, UploadDecision
from rostering_pipeline.report import render_rejections_csv, render_report
from rostering_pipeline.roster.diff import CHANGE_SCHEMA
from rostering_pipeline.upload_spec.rejections import Rejection, rejection_frame
from rostering_pipeline.upload_spec.validate import validate_upload
from rostering_pipeline.uploads import ArchivedFile, Upload
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.oneroster_uploads import oneroster_day_one, zipped
from rostering_pipeline_tests.roster.test_apply_invariants import _materialize, _upload
from rostering_pipeline_tests.uploads import day_one

LEA = "101912"
HEADER = "student_id,first_name,last_name,birth_date,grade,campus_id"


def _report(
    files: dict[str, str | bytes], decision: str | None = None, held_by: str | None = None
) -> tuple[str, pl.DataFrame]:
    raw = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    validated = validate_upload(LEA, raw, date(2026, 9, 1))
    upload = Upload(
        f"{LEA}-20260901T120000Z-abcdef12",
        LEA,
        datetime(2026, 9, 1, 12, tzinfo=UTC),
        "key",
        tuple(ArchivedFile(n, len(b), 0, "sha", "path") for n, b in raw.items()),
    )
    decision = decision or ("apply" if validated.accepted else "rejected")
    plan = UploadDecision(upload.upload_id, LEA, decision, "", None, held_by=held_by)
    return render_report(upload, plan, validated.rejections), validated.rejections


def _students(*rows: str) -> dict[str, str]:
    files = day_one()
    files["students.csv"] = "\n".join([HEADER, "S1,Luz,Peña,2016-03-04,04,101912001", *rows]) + "\n"
    files["enrollments.csv"] = "class_id,student_id\nC1,S1\n"
    return files


def test_a_clean_upload_says_so() -> None:
    report, _ = _report(day_one())

    assert "**Applied**" in report
    assert "Nothing: every row was accepted." in report


def test_rejected_rows_are_counted_once_per_row_and_grouped_by_rule() -> None:
    report, _ = _report(
        _students(
            "S2,,Ortiz,2016-13-01,04,101912001",  # two rules broken: one row
            "S3,Ivy,Nguyen,2016-14-01,04,101912001",
        )
    )

    assert "**Applied, except 2 rejected rows (see What needs fixing)**" in report
    assert "| students | 0 | 0 | 0 | 2 |" in report
    section = report.split("birth_date must be a date written")[1].split("###")[0]
    assert "What to do: Write the date as YYYY-MM-DD" in section
    assert "| 3 | birth_date | 2016-13-01 |" in section
    assert "| 4 | birth_date | 2016-14-01 |" in section
    assert "### Row not applied: students.csv: a required value is missing" in report
    assert "A row left out keeps what your roster already had for it" in report


def test_problems_with_the_same_rule_but_different_fixes_are_told_apart() -> None:
    report, _ = _report(
        _students(
            "S2,Max,Ortiz,2016-13-01,04,101912001", "S3,Ivy,Nguyen,2016-05-06 00:00,04,101912001"
        )
    )

    assert report.count("birth_date must be a date written") == 2
    assert "What to do: The date carries a time" in report


def test_a_rejected_upload_shows_what_stops_it_first_and_no_change_table() -> None:
    files = _students("S2,Max,Ortiz,2016-13-01,04,101912001")
    del files["classes.csv"]
    files["locker.csv"] = "x\n"

    report, _ = _report(files)

    assert "**Rejected: nothing was applied**" in report
    assert "None: nothing in this upload was applied." in report
    assert "| records |" not in report
    stops = report.index("### Stops the whole upload: classes.csv: required file is missing")
    note = report.index("### Note (applied anyway): locker.csv: file is not part of the upload")
    assert stops < note


def test_a_long_list_points_at_the_csv() -> None:
    rows = [f"S{i},Max,Ortiz,2016-01-01,13,101912001" for i in range(2, 62)]

    report, _ = _report(_students(*rows))

    assert "| 52 | grade | 13 |" in report
    assert "| 53 | grade |" not in report
    assert "… and 10 more: see `rejections_20260901T120000Z.csv`." in report


def test_values_cannot_break_the_markdown_table() -> None:
    report, rejections = _report(
        _students('S2,"Max | ` the\nsecond",Ortiz,2016-01-01,13,101912001')
    )

    assert "| 3 | grade | 13 |" in report
    rejections = pl.concat(
        [rejections, rejection_frame().vstack(rejections.with_columns(value=pl.lit("a|b`c\nd")))]
    )
    upload = Upload("u", LEA, datetime(2026, 9, 1, tzinfo=UTC), "k")
    text = render_report(upload, UploadDecision("u", LEA, "apply", "", None), rejections)
    assert "| a\\|b\\`c ⏎ d |" in text


def test_a_oneroster_report_explains_its_terms() -> None:
    files = oneroster_day_one()
    files["demographics.csv"] = files["demographics.csv"].replace("2016-05-06", "2016-13-06")

    report, _ = _report({"export.zip": zipped(files)})

    assert "This upload is a OneRoster CSV set" in report
    assert "### Row not applied: demographics.csv: birth_date must be a date written" in report
    assert "| 3 | birthDate | 2016-13-06 |" in report
    assert "| students | 0 | 0 | 0 | 1 |" in report and "| enrollments | 0 | 0 | 0 | 1 |" in report


def test_rejections_csv_has_one_row_per_rejection_with_values_intact() -> None:
    _, rejections = _report(_students('S2,"Peña, ""Max""",Ortiz,2016-13-01,04,101912001'))

    listed = pl.read_csv(io.BytesIO(render_rejections_csv(rejections)), infer_schema=False)

    assert listed.columns == ["file", "line", "column", "rule", "value", "fix", "level"]
    assert listed.height == rejections.height
    assert listed.filter(pl.col("column") == "birth_date")["value"].to_list() == ["2016-13-01"]


@pytest.mark.parametrize(
    "text",
    ["=1+2", "+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)", "\t=1+2", "\rx", "  =1+2", "\n=1+2"],
)
def test_rejections_csv_shows_a_formula_as_text_in_every_column(text: str) -> None:
    rejection = Rejection(text, 7, text, text, text, text, "row", "students")

    listed = render_rejections_csv(rejection_frame([rejection]))

    [row] = list(csv.DictReader(io.StringIO(listed.decode(), newline="")))
    assert row == {
        "file": f"'{text}",
        "line": "7",
        "column": f"'{text}",
        "rule": f"'{text}",
        "value": f"'{text}",
        "fix": f"'{text}",
        "level": "row",
    }


def test_rejection_frames_recorded_before_the_entity_column_still_render() -> None:
    _, rejections = _report(_students("S2,Max,Ortiz,2016-13-01,04,101912001"))
    upload = Upload("u", LEA, datetime(2026, 9, 1, tzinfo=UTC), "k")

    text = render_report(
        upload, UploadDecision("u", LEA, "apply", "", None), rejections.drop("entity")
    )

    assert "| students | 0 | 0 | 0 | 1 |" in text


def test_additions_only_shows_per_kind_how_many_missing_records_were_kept() -> None:
    files = {k: v.encode() for k, v in day_one().items()}
    validated = validate_upload(LEA, files, date(2026, 9, 1))
    upload = Upload(
        f"{LEA}-20260902T120000Z-abcdef12",
        LEA,
        datetime(2026, 9, 2, 12, tzinfo=UTC),
        "key",
        tuple(ArchivedFile(n, len(b), 0, "sha", "path") for n, b in files.items()),
    )
    empty = pl.DataFrame()
    changes = pl.DataFrame(
        {
            "key": ["S4"],
            "change": ["add"],
            "old_values": [None],
            "new_values": ["{}"],
            "source_line": [5],
        },
        schema=CHANGE_SCHEMA,
    )
    plan = UploadDecision(
        upload.upload_id,
        LEA,
        "apply",
        "additions-only mode: 3 records missing from the upload were kept",
        None,
        entities={
            "students": EntityDiff("students", empty, empty, changes, withheld_drops=2),
            "enrollments": EntityDiff(
                "enrollments", empty, empty, changes.head(0), withheld_drops=1
            ),
        },
    )

    report = render_report(upload, plan, validated.rejections)

    assert (
        "| records | added | updated | dropped | kept (additions-only) | rows rejected |" in report
    )
    assert "| students | 1 | 0 | 0 | 2 | 0 |" in report
    assert "| enrollments | 0 | 0 | 0 | 1 | 0 |" in report
    assert "| staff | 0 | 0 | 0 | 0 | 0 |" in report
    assert "3 records missing from this upload were kept, not dropped" in report
    # Complete mode: no such column.
    complete = UploadDecision(upload.upload_id, LEA, "apply", "", None)
    assert "kept (additions-only)" not in render_report(upload, complete, validated.rejections)


APPLIED_REST = "the rest of the upload was applied"


def _with_a_bad_birth_date(files: dict[str, str]) -> dict[str, str]:
    files["students.csv"] = files["students.csv"].replace("2016-03-04", "2016-13-04", 1)
    return files


def _only_report(pipeline: Pipeline) -> str:
    [report] = [t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_")]
    return report


def test_rejected_rows_of_an_applied_upload_say_the_rest_was_applied(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, _with_a_bad_birth_date(day_one()))

    assert [r.success for r in pipeline.sync()] == [True]

    report = _only_report(pipeline)
    assert "**Applied, except 2 rejected rows (see What needs fixing)**" in report
    assert f"Each row below was left out and {APPLIED_REST}." in report


def test_rejected_rows_of_a_held_upload_say_nothing_is_applied_yet(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, _upload(100), day=1)
    pipeline.sync()
    pipeline.upload(LEA, _with_a_bad_birth_date(_upload(60)), day=2)

    assert [r.success for r in pipeline.sync()] == [True]  # held by the safeguard

    report = sorted(t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_"))[-1]
    assert "**Held for review: nothing was applied yet**" in report
    assert APPLIED_REST not in report
    assert (
        "Nothing in this upload is applied until an operator decides on it; if it is applied, "
        "each row below is left out." in report
    )


def test_rejected_rows_of_an_upload_rejected_as_a_whole_say_nothing_was_applied(
    pipeline: Pipeline,
) -> None:
    pipeline.upload(LEA, _upload(100), day=1)
    pipeline.sync()
    pipeline.upload(LEA, _with_a_bad_birth_date(_upload(60)), day=2)
    pipeline.sync()
    [(held_id,)] = pipeline.query("select upload_id from ingest.uploads where status = 'held'")

    rejected = _materialize(
        pipeline,
        {
            "ops": {
                "raw_upload": {"config": {"replay_upload_id": held_id}},
                "roster_diff": {"config": {"held_upload": "reject"}},
            }
        },
    )

    assert rejected.success
    report = sorted(t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_"))[-1]
    assert "**Rejected: nothing was applied**" in report
    assert "| 2 | birth_date | 2016-13-04 |" in report  # the rows are still listed
    assert APPLIED_REST not in report
    assert "Nothing in this upload was applied, these rows included" in report
    assert "Stops the whole upload" not in report  # nothing did: an operator rejected it
    assert "Upload all files again once they are complete and correct." in report


@pytest.mark.parametrize(
    ("decision", "held_by", "intro"),
    [
        ("duplicate", None, "This upload repeats the last one, which left out each row below"),
        ("superseded", None, "Nothing in this upload was applied, these rows included: a newer"),
        ("held", "blackout", "Nothing in this upload is applied before the sync blackout ends"),
    ],
)
def test_rejected_rows_are_introduced_by_what_happened_to_the_upload(
    decision: str, held_by: str | None, intro: str
) -> None:
    report, _ = _report(_students("S2,Max,Ortiz,2016-13-01,04,101912001"), decision, held_by)

    assert intro in report
    assert APPLIED_REST not in report
