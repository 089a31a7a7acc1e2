"""Hostile or mistaken entries in an LEA's inbox: links, folders, odd names, empty and
oversized files. Each is rejected cleanly (recorded, reported to the LEA, the run itself
succeeds), nothing is written outside the archive, and no link is ever followed."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from rostering_pipeline.sftp import FileTooLarge, RemoteFile, SftpResource
from rostering_pipeline.uploads import screen_entries, unsafe_name
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.faults import assert_archive_whole, stamp
from rostering_pipeline_tests.uploads import day_one

LEA = "101912"
OTHER = "227901"
OTHER_STUDENTS = "student_id,first_name,last_name,birth_date,grade,campus_id\nQ1,Zed,Secret,2015-01-01,05,227901001\n"


def _tree(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def _written_where_allowed(pipeline: Pipeline, before: set[Path]) -> None:
    """Everything the run created is in the archive, the warehouse, or the LEA's
    outbox/ and processed/ folders on the server."""
    new = _tree(pipeline.root) - before
    allowed = (
        ("sensor_cursor.json",),
        ("archive",),
        ("warehouse.duckdb",),
        ("warehouse.duckdb.wal",),
        ("sftp", LEA, "outbox"),
        ("sftp", LEA, "processed"),
    )
    stray = [p for p in new if not any(p.parts[: len(a)] == a for a in allowed)]
    assert stray == [], f"written outside the archive and the LEA's folders: {stray}"


def _rejected_cleanly(pipeline: Pipeline, file: str, rule: str) -> str:
    """The run succeeded, the upload is rejected with `rule` on `file`, the roster is empty,
    and the LEA's report says what to fix; returns the report."""
    assert pipeline.query("select status from ingest.uploads") == [("rejected",)]
    rejections = pipeline.query(
        "select file, rule, level, fix from quality.rejections where level = 'upload'"
    )
    assert (file, rule, "upload") in [r[:3] for r in rejections], rejections
    assert all(r[3] for r in rejections)
    assert pipeline.query("select count(*) from roster.students") == [(0,)]
    report = next(t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_"))
    assert "Rejected: nothing was applied" in report and rule in report
    return report


def _with_entry(pipeline: Pipeline, make: Callable[[Path], None]) -> set[Path]:
    """The day-one upload without students.csv, plus an entry made by `make` in the inbox."""
    files = day_one()
    del files["students.csv"]
    pipeline.upload(LEA, files)
    make(pipeline.sftp_root / LEA / "inbox")
    return _tree(pipeline.root)


def _other_lea(pipeline: Pipeline) -> Path:
    folder = pipeline.sftp_root / OTHER / "inbox"
    folder.mkdir(parents=True)
    (folder / "students.csv").write_text(OTHER_STUDENTS)
    return folder / "students.csv"


@pytest.mark.parametrize("target", ["other_lea", "outside_root"])
def test_symlink_is_never_followed(pipeline: Pipeline, target: str) -> None:
    other = _other_lea(pipeline)
    # Another LEA's file (inside the server's root) or a file outside it altogether.
    secret = other if target == "other_lea" else pipeline.root / "secret.csv"
    secret.write_text(OTHER_STUDENTS)
    before = _with_entry(
        pipeline,
        lambda inbox: (inbox / "students.csv").symlink_to(os.path.relpath(secret, inbox)),
    )

    runs = pipeline.sync()

    assert [r.lea_id for r in runs if r.success] == [LEA]
    _rejected_cleanly(pipeline, "students.csv", "a symbolic link, not a file")
    archived = assert_archive_whole(Path(pipeline.env["ROSTERING_ARCHIVE"]))
    assert OTHER_STUDENTS.encode() not in {p.read_bytes() for p in archived}
    assert (pipeline.sftp_root / LEA / "inbox" / "students.csv").is_symlink()  # left untouched
    assert secret.read_text() == OTHER_STUDENTS
    _written_where_allowed(pipeline, before)


def test_folder_where_a_file_should_be(pipeline: Pipeline) -> None:
    before = _with_entry(pipeline, lambda inbox: (inbox / "students.csv").mkdir())

    assert [r.success for r in pipeline.sync()] == [True]

    _rejected_cleanly(pipeline, "students.csv", "a folder where a file should be")
    assert (pipeline.sftp_root / LEA / "inbox" / "students.csv").is_dir()
    _written_where_allowed(pipeline, before)


def test_name_with_a_line_break(pipeline: Pipeline) -> None:
    def make(inbox: Path) -> None:
        (inbox / "students\n.csv").write_text(day_one()["students.csv"])
        stamp(inbox / "students\n.csv", 1)

    before = _with_entry(pipeline, make)

    assert [r.success for r in pipeline.sync()] == [True]

    rule = "file name contains a line break or another invisible control character"
    report = _rejected_cleanly(pipeline, "students\\n.csv", rule)
    # The shown name's backslash is escaped in markdown: it renders as students\n.csv.
    assert "students\\\\n.csv" in report and "Rename the file" in report
    _written_where_allowed(pipeline, before)


def test_name_that_is_not_utf8_does_not_stop_other_leas(pipeline: Pipeline) -> None:
    def make(inbox: Path) -> None:
        path = os.path.join(os.fsencode(inbox), b"estudiantes_a\xf1o.csv")
        with open(path, "wb") as out:
            out.write(day_one()["students.csv"].encode())

    before = _with_entry(pipeline, make)
    pipeline.upload("015901", {k: v.replace("101912", "015901") for k, v in day_one().items()})

    runs = {r.lea_id: r.success for r in pipeline.sync()}

    assert runs == {LEA: True, "015901": True}
    assert pipeline.query("select lea_id, status from ingest.uploads order by 1") == [
        ("015901", "applied"),
        (LEA, "rejected"),
    ]
    rejections = pipeline.query("select file, rule from quality.rejections where lea_id = ?", [LEA])
    assert ("estudiantes_a\\xf1o.csv", "file name is not valid UTF-8") in rejections
    assert pipeline.query("select count(*) from roster.students where lea_id = ?", [LEA]) == [(0,)]
    before |= (
        _tree(pipeline.root) - before - {p for p in _tree(pipeline.root) if "015901" in p.parts}
    )


def test_non_ascii_name_is_read_like_any_other(pipeline: Pipeline) -> None:
    files: dict[str, str | bytes] = {**day_one(), "notas_del_año.csv": "a,b\n1,2\n"}
    pipeline.upload(LEA, files)

    assert [r.success for r in pipeline.sync()] == [True]

    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert pipeline.query(
        "select file, rule, level from quality.rejections where level = 'warning'"
    ) == [("notas_del_año.csv", "file is not part of the upload", "warning")]


def test_empty_file_is_rejected_with_its_name(pipeline: Pipeline) -> None:
    files = day_one()
    files["students.csv"] = ""
    pipeline.upload(LEA, files)
    before = _tree(pipeline.root)

    assert [r.success for r in pipeline.sync()] == [True]

    _rejected_cleanly(pipeline, "students.csv", "file is empty")
    _written_where_allowed(pipeline, before)


def test_file_over_the_size_limit_is_never_downloaded(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROSTERING_MAX_FILE_BYTES", "150")
    files = day_one()
    assert (
        len(files["students.csv"])
        > 150
        >= max(len(v) for k, v in files.items() if k != "students.csv")
    )
    pipeline.upload(LEA, files)
    before = _tree(pipeline.root)

    assert [r.success for r in pipeline.sync()] == [True]

    _rejected_cleanly(pipeline, "students.csv", "file is larger than the limit of 150 bytes")
    archived = assert_archive_whole(Path(pipeline.env["ROSTERING_ARCHIVE"]))
    assert files["students.csv"].encode() not in {p.read_bytes() for p in archived}
    assert pipeline.inbox(LEA) == []  # moved to processed/ with the rest of the upload
    _written_where_allowed(pipeline, before)


def test_download_stops_at_the_size_limit(pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline.upload(LEA, {"students.csv": "x" * 10_000}, ready=False)
    sftp = SftpResource(
        host=pipeline.env["ROSTERING_SFTP_HOST"],
        port=int(pipeline.env["ROSTERING_SFTP_PORT"]),
        username=pipeline.env["ROSTERING_SFTP_USER"],
        password=pipeline.env["ROSTERING_SFTP_PASSWORD"],
        known_hosts_path=pipeline.env["ROSTERING_SFTP_KNOWN_HOSTS"],
    )

    with pytest.raises(FileTooLarge, match="10,000 bytes, over 4,096"):
        sftp.download(f"/{LEA}/inbox/students.csv", tmp_path / "partial", max_bytes=4096)

    assert (tmp_path / "partial").stat().st_size == 0


def test_max_file_bytes_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from rostering_pipeline.settings import SettingError, ingest_settings_from_env

    monkeypatch.delenv("ROSTERING_MAX_FILE_BYTES", raising=False)
    assert ingest_settings_from_env().max_file_bytes == 2 * 1024**3
    monkeypatch.setenv("ROSTERING_MAX_FILE_BYTES", "1048576")
    assert ingest_settings_from_env().max_file_bytes == 1_048_576
    monkeypatch.setenv("ROSTERING_MAX_FILE_BYTES", "2GB")
    with pytest.raises(SettingError, match="ROSTERING_MAX_FILE_BYTES='2GB' is not a whole number"):
        ingest_settings_from_env()


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("../students.csv", "file name contains a path separator (/ or \\)"),
        ("..", "file name is empty, '.' or '..'"),
        ("a\\..\\b.csv", "file name contains a path separator (/ or \\)"),
        (
            "students.csv\x00",
            "file name contains a line break or another invisible control character",
        ),
        (
            "students\u202ev.csc",
            "file name contains a line break or another invisible control character",
        ),
        ("s" * 300, "file name is longer than 255 bytes"),
    ],
)
def test_names_a_server_could_send_are_refused(name: str, rule: str) -> None:
    """A compromised or buggy server could list names no file system holds; the pipeline
    builds paths from names, so each is refused before it is used."""
    entry = RemoteFile(name, 10, 0, "file")

    accepted, refused = screen_entries([entry], max_file_bytes=1000)

    assert accepted == [] and [r.rule for r in refused] == [rule]
    assert unsafe_name(entry) == rule


def test_zip_bomb_is_rejected_without_being_expanded(pipeline: Pipeline) -> None:
    """A 10 MB .zip that would unpack to 2.3 GB: ingest archives it as it came (it never
    expands anything itself), and reading it stops at the limit, rejecting the upload."""
    bomb = io.BytesIO()
    zeros = b"0" * (1 << 24)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("users.csv", "w", force_zip64=True) as member:
            for _ in range(136):
                member.write(zeros)
    pipeline.upload(LEA, {"oneroster.zip": bomb.getvalue()})
    before = _tree(pipeline.root)

    assert [r.success for r in pipeline.sync()] == [True]

    assert pipeline.query("select status from ingest.uploads") == [("rejected",)]
    rules = [
        r[0] for r in pipeline.query("select rule from quality.rejections where level = 'upload'")
    ]
    assert any("unpacks to more than" in rule for rule in rules), rules
    archived = assert_archive_whole(Path(pipeline.env["ROSTERING_ARCHIVE"]))
    assert [p.stat().st_size for p in archived] == [len(bomb.getvalue())]  # only the zip itself
    assert pipeline.query("select count(*) from roster.students") == [(0,)]
    _written_where_allowed(pipeline, before)
