import csv
import io
import math
import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from rostering_demo.generator import (
    GRADES,
    INJECTION_DETAILS,
    INJECTIONS,
    UPLOAD_FILES,
    LeaSpec,
    generate_upload,
    main,
    write_ready,
)

ZERO_LED = LeaSpec("015901", 300, campuses=3)
PLAIN = LeaSpec("101912", 500)


def read(upload: Path, name: str) -> pl.DataFrame:
    return pl.read_csv(upload / name, infer_schema=False)


def rows(path: Path, encoding: str = "utf-8-sig") -> list[dict[str, str]]:
    """The data rows of a CSV file; rows[line - 2] is the row on `line`."""
    return list(csv.DictReader(io.StringIO(path.read_text(encoding=encoding))))


def rounded(count: float) -> int:
    """Half up, as the generator rounds daily change counts."""
    return math.floor(count + 0.5)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_upload(ZERO_LED, tmp_path_factory.mktemp("clean"), seed=7)


def test_same_inputs_give_byte_identical_files(tmp_path: Path) -> None:
    first = generate_upload(PLAIN, tmp_path / "a", seed=3, day=3)
    second = generate_upload(PLAIN, tmp_path / "b", seed=3, day=3)
    other_seed = generate_upload(PLAIN, tmp_path / "c", seed=4, day=3)

    for name in UPLOAD_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / "students.csv").read_bytes() != (other_seed / "students.csv").read_bytes()


@pytest.mark.parametrize(("spec", "day"), [(ZERO_LED, 1), (PLAIN, 1), (PLAIN, 4)])
def test_clean_upload_is_consistent(tmp_path: Path, spec: LeaSpec, day: int) -> None:
    upload = generate_upload(spec, tmp_path, seed=1, day=day)
    campuses, staff, students = (read(upload, f) for f in UPLOAD_FILES[:3])
    classes, enrollments, co_teachers = (read(upload, f) for f in UPLOAD_FILES[3:])

    raw = b"".join((upload / name).read_bytes() for name in UPLOAD_FILES)
    assert b"\r" not in raw and not raw.startswith(b"\xef\xbb\xbf")
    assert campuses["campus_id"].str.contains(rf"^{spec.lea_id}\d{{3}}$").all()
    for frame, key in [
        (campuses, "campus_id"),
        (staff, "staff_id"),
        (students, "student_id"),
        (classes, "class_id"),
    ]:
        assert frame[key].is_unique().all(), key
    assert staff["email"].str.to_lowercase().is_unique().all()
    assert (
        staff["email"].str.contains(rf"^[a-z]+\.[a-z]+\d+@{spec.lea_id}\.k12\.example\.org$").all()
    )
    assert students["state_id"].drop_nulls().is_unique().all()
    assert students["state_id"].drop_nulls().str.contains(r"^\d{10}$").all()
    assert students["grade"].is_in(GRADES).all()
    assert classes["school_year"].eq("2026-2027").all()
    for frame in (staff, students, classes):
        assert frame["campus_id"].is_in(campuses["campus_id"].implode()).all()
    assert classes["teacher_id"].is_in(staff["staff_id"].implode()).all()
    assert enrollments["class_id"].is_in(classes["class_id"].implode()).all()
    assert enrollments["student_id"].is_in(students["student_id"].implode()).all()
    assert co_teachers["class_id"].is_in(classes["class_id"].implode()).all()
    assert co_teachers["staff_id"].is_in(staff["staff_id"].implode()).all()
    assert co_teachers.height == max(rounded(classes.height * 0.05), 1)
    co_with_teacher = co_teachers.join(classes, on="class_id")
    assert (co_with_teacher["staff_id"] != co_with_teacher["teacher_id"]).all()
    assert 2.3 < enrollments.height / students.height < 2.7


def test_ages_fit_grades_on_the_first_day(tmp_path: Path) -> None:
    students = read(generate_upload(PLAIN, tmp_path, seed=2), "students.csv")
    birth = pl.coalesce(
        pl.col("birth_date").str.to_date("%Y-%m-%d", strict=False),
        pl.col("birth_date").str.to_date("%m/%d/%Y", strict=False),
    )
    ages = students.select(
        "grade",
        "birth_date",
        age=(pl.lit(date(2026, 9, 1)) - birth).dt.total_days() // 365.25,
    )

    assert ages["age"].null_count() == 0
    assert ages["birth_date"].str.contains("/").any()
    # Age on 1 September: EE 1-2, PK 4, KG 5, grade n 5 + n (6 + n if held back a year).
    expected = {"EE": (0, 2), "PK": (3, 4), "KG": (4, 5)}
    expected |= {f"{n:02d}": (n + 4, n + 6) for n in range(1, 13)}
    for grade, age in ages.select("grade", "age").iter_rows():
        low, high = expected[grade]
        assert low <= age <= high, (grade, age)


@pytest.mark.parametrize(
    ("adds", "drops", "updates"), [(0.02, 0.02, 0.03), (0.10, 0.05, 0.0), (0.0, 0.0, 0.07)]
)
def test_each_day_changes_students_at_the_requested_rates(
    tmp_path: Path, adds: float, drops: float, updates: float
) -> None:
    rates = {"adds": adds, "drops": drops, "updates": updates}
    days = [
        read(generate_upload(PLAIN, tmp_path / str(day), seed=5, day=day, **rates), "students.csv")
        for day in (1, 2, 3)
    ]

    for before, after in zip(days, days[1:], strict=False):
        n = before.height

        old, new = set(before["student_id"]), set(after["student_id"])
        both = before.join(after, on="student_id", suffix="_new")
        changed = both.filter(
            pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_new")) for c in before.columns[1:])
        )
        assert len(old - new) == rounded(n * drops)
        assert len(new - old) == rounded(n * adds)
        assert changed.height == rounded(n * updates)
        assert (
            changed.select(
                pl.sum_horizontal(
                    pl.col(c).ne_missing(pl.col(f"{c}_new"))
                    for c in ("grade", "last_name", "campus_id")
                )
            )
            .to_series()
            .ge(1)
            .all()
        )


def test_staff_turnover_hands_classes_to_the_replacement(tmp_path: Path) -> None:
    first = generate_upload(PLAIN, tmp_path / "1", seed=5)
    second = generate_upload(PLAIN, tmp_path / "2", seed=5, day=2, drops=0.2)
    staff_1, staff_2 = read(first, "staff.csv"), read(second, "staff.csv")
    classes_1, classes_2 = read(first, "classes.csv"), read(second, "classes.csv")

    left = set(staff_1["staff_id"]) - set(staff_2["staff_id"])
    hired = set(staff_2["staff_id"]) - set(staff_1["staff_id"])
    assert len(left) == len(hired) == rounded(staff_1.height * 0.2 / 2) > 0
    assert (
        not (set(classes_2["teacher_id"]) | set(read(second, "co_teachers.csv")["staff_id"])) & left
    )
    handed_over = classes_1.filter(pl.col("teacher_id").is_in(list(left)))["class_id"]
    assert (
        set(classes_2.filter(pl.col("class_id").is_in(handed_over.implode()))["teacher_id"])
        <= hired
    )


def test_write_ready_writes_an_empty_file(tmp_path: Path) -> None:
    assert write_ready(tmp_path).read_bytes() == b""
    assert (tmp_path / "ready").exists()


def _line(path: Path, line: int, encoding: str = "utf-8-sig") -> dict[str, str]:
    return rows(path, encoding)[line - 2]


# Per injection: the lines it inserts, and what must be true of the written files.
INSERTED = {
    "bad_birth_date": (2,),
    "spreadsheet_date": (3,),
    "missing_leading_zero": (4,),
    "bad_grade": (5,),
    "duplicate_student_id": (6, 7),
    "unknown_campus": (8,),
    "bad_email": (2,),
    "duplicate_email": (3, 4),
    "class_unknown_teacher": (2,),
    "enrollment_unknown_student": (2,),
    "co_teacher_is_teacher": (2,),
    "other_lea_campus": (2,),
}


def check_injection(name: str, upload: Path, clean: Path) -> None:
    lea = ZERO_LED.lea_id
    students, staff = upload / "students.csv", upload / "staff.csv"
    campus_ids = set(read(clean, "campuses.csv")["campus_id"])
    if name == "bad_birth_date":
        assert _line(students, 2)["birth_date"] == "2024-13-45"
    elif name == "spreadsheet_date":
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} 00:00", _line(students, 3)["birth_date"])
    elif name == "missing_leading_zero":
        value = _line(students, 4)["campus_id"]
        assert len(value) == 8 and "0" + value in campus_ids
    elif name == "bad_grade":
        assert _line(students, 5)["grade"] == "13"
    elif name == "duplicate_student_id":
        six, seven = _line(students, 6), _line(students, 7)
        assert six["student_id"] == seven["student_id"]
        assert six["state_id"] != seven["state_id"]
        assert six["student_id"] not in set(read(clean, "students.csv")["student_id"])
    elif name == "unknown_campus":
        assert _line(students, 8)["campus_id"] == f"{lea}999" not in campus_ids
    elif name == "windows_1252":
        raw = students.read_bytes()
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        assert _line(students, 9, "cp1252")["last_name"] == "Peña"
        assert len(rows(students, "cp1252")) == len(rows(clean / "students.csv")) + 1
    elif name == "bad_email":
        assert _line(staff, 2)["email"] == "not-an-email"
    elif name == "duplicate_email":
        three, four = _line(staff, 3)["email"], _line(staff, 4)["email"]
        assert three != four and three.lower() == four.lower()
    elif name == "class_unknown_teacher":
        teacher = _line(upload / "classes.csv", 2)["teacher_id"]
        assert teacher not in set(read(upload, "staff.csv")["staff_id"])
    elif name == "enrollment_unknown_student":
        row = _line(upload / "enrollments.csv", 2)
        assert row["student_id"] not in set(read(upload, "students.csv")["student_id"])
        assert row["class_id"] in set(read(upload, "classes.csv")["class_id"])
    elif name == "co_teacher_is_teacher":
        row = _line(upload / "co_teachers.csv", 2)
        assert row["staff_id"] == _line(upload / "classes.csv", 2)["teacher_id"]
        assert row["class_id"] == _line(upload / "classes.csv", 2)["class_id"]
    elif name == "missing_required_column":
        assert "last_name" not in read(upload, "students.csv").columns
        assert read(upload, "students.csv").height == read(clean, "students.csv").height
    elif name == "missing_file":
        assert not (upload / "enrollments.csv").exists()
    elif name == "other_lea_campus":
        campus_id = _line(upload / "campuses.csv", 2)["campus_id"]
        assert re.fullmatch(r"\d{9}", campus_id) and not campus_id.startswith(lea)
    elif name == "bom_crlf":
        raw = students.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\r\n") == raw.count(b"\n")
        assert raw[3:].replace(b"\r\n", b"\n") == (clean / "students.csv").read_bytes()
    elif name == "sis_prefix_header":
        header = students.read_text().splitlines()[0].split(",")
        assert header[0] == "STU.student_id" and "student_id" not in header
    elif name == "unknown_column":
        frame = read(upload, "students.csv")
        assert frame.columns[-1] == "locker_number" and frame["locker_number"].null_count() == 0
        assert frame.drop("locker_number").equals(read(clean, "students.csv"))
    else:
        pytest.fail(f"no check for injection {name}")


@pytest.mark.parametrize("name", sorted(INJECTIONS))
def test_injection_makes_the_described_change(name: str, tmp_path: Path, clean: Path) -> None:
    upload = generate_upload(ZERO_LED, tmp_path, seed=7, inject=[name])
    target = INJECTION_DETAILS[name].file

    check_injection(name, upload, clean)
    for file in UPLOAD_FILES:
        if file != target:
            assert (upload / file).read_bytes() == (clean / file).read_bytes(), file
    if name in INSERTED:
        lines = (upload / target).read_text().splitlines(keepends=True)
        kept = [text for number, text in enumerate(lines, 1) if number not in INSERTED[name]]
        assert "".join(kept) == (clean / target).read_text()


def test_injection_table_names_file_line_and_column() -> None:
    assert INJECTIONS.keys() == INJECTION_DETAILS.keys()
    for name, injection in INJECTION_DETAILS.items():
        assert injection.file in UPLOAD_FILES, name
        assert injection.file in injection.description, name
        if injection.line is not None:
            assert f"line {injection.line}" in injection.description, name


def test_row_injections_combine_on_their_own_lines(tmp_path: Path, clean: Path) -> None:
    inject = ["bad_grade", "missing_leading_zero", "unknown_campus"]
    upload = generate_upload(ZERO_LED, tmp_path, seed=7, inject=inject)

    for name in inject:
        check_injection(name, upload, clean)


@pytest.mark.parametrize(
    ("spec", "inject", "message"),
    [
        (PLAIN, ["missing_leading_zero"], "zero-led"),
        (PLAIN, ["no_such_thing"], "unknown injection"),
        (PLAIN, ["windows_1252", "bom_crlf"], "cannot be combined"),
    ],
)
def test_impossible_injections_are_refused(
    tmp_path: Path, spec: LeaSpec, inject: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        generate_upload(spec, tmp_path, inject=inject)


def test_spec_defaults_follow_the_student_count() -> None:
    spec = LeaSpec("101912", 6000)

    assert (spec.campuses, spec.staff, spec.classes) == (10, 400, 300)
    assert LeaSpec("015901", 40).campuses == 1
    with pytest.raises(ValueError, match="6 digits"):
        LeaSpec("15901", 40)


def test_cli_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    options = capsys.readouterr().out.split("options:\n", 1)[1]
    # One entry per option: its line ("  --seed SEED   help…"), then help lines indented deeper.
    entries = re.split(r"\n(?=  -)", options.strip("\n"))
    helps = {}
    for entry in entries:
        first, *more = entry.splitlines()
        flag = first.split()[0].rstrip(",")
        same_line = re.split(r"\s{2,}", first.strip(), maxsplit=1)[1:]
        helps[flag] = " ".join([*same_line, *(line.strip() for line in more)])
    for flag in ("--out", "--lea", "--seed", "--day", "--date", "--inject", "--ready"):
        assert len(helps.get(flag, "")) > 10, (flag, helps.get(flag))
    assert "lea_id" in helps["--lea"] and "students" in helps["--lea"]
    assert "seed" in helps["--seed"].lower()
    assert "day" in helps["--day"]


def test_cli_writes_one_inbox_per_lea(tmp_path: Path) -> None:
    main(
        [
            "--out", str(tmp_path), "--lea", "015901:60", "--lea", "101912:50:2",
            "--seed", "1", "--inject", "015901:bad_grade", "--ready",
        ]
    )  # fmt: skip

    zero_led, plain = tmp_path / "015901" / "inbox", tmp_path / "101912" / "inbox"
    assert _line(zero_led / "students.csv", 5)["grade"] == "13"
    assert "13" not in set(read(plain, "students.csv")["grade"])
    assert read(plain, "campuses.csv").height == 2
    assert (zero_led / "ready").exists() and (plain / "ready").exists()
