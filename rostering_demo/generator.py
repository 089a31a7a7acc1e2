"""Seeded synthetic LEA uploads in the native CSV format of UPLOAD_SPEC.md.

Tests, benchmarks and the demo data all need uploads that look like a real
district's: zero-led IDs, non-ASCII names, mixed date formats, a roster that
drifts a little every day, and bad input of known kinds at known lines. Every
value is derived from a counter-based hash of (seed, lea_id, field, record
serial), so the same (spec, seed, day) always gives byte-identical files, and
a million students take seconds (all columns are built as polars expressions).

Day 1 is the baseline; day N applies N-1 deterministic daily changes to it.
Injections are applied to the written files only and never carried to the
next day.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import polars as pl

UPLOAD_FILES = (
    "campuses.csv",
    "staff.csv",
    "students.csv",
    "classes.csv",
    "enrollments.csv",
    "co_teachers.csv",
)
GRADES = ("EE", "PK", "KG", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12")
MAX_CAMPUSES = 900  # campus numbers 001-900; 999 stays free for `unknown_campus`

FIRST_NAMES = (
    "Sofía", "Mateo", "Zoë", "José", "María", "Liam", "Olivia", "Noah", "Emma", "Santiago",
    "Ava", "Diego", "Isabella", "Elijah", "Camila", "Lucas", "Mia", "Thảo", "Minh", "Ngọc",
    "Aaliyah", "Jamal", "Mei", "Wei", "Chloé", "Renée", "Björn", "Søren", "Siobhán", "François",
    "Ximena", "Valentina", "Jesús", "Ángel", "Luis", "Carlos", "Ana", "Lucía", "Emily", "James",
    "Harper", "Benjamin", "Amelia", "Henry", "Evelyn", "Alexander", "Abigail", "Daniel",
    "Fatima", "Omar", "Priya", "Arjun", "Kenji", "Yuki", "Chidi", "Amara", "Declan", "Nora",
    "Zuri", "Elena",
)  # fmt: skip
LAST_NAMES = (
    "Peña", "Nguyễn", "O'Brien", "García", "Martínez", "Hernández", "López", "González",
    "Rodríguez", "Pérez", "Sánchez", "Ramírez", "Torres", "Flores", "Rivera", "Gómez", "Díaz",
    "Reyes", "Cruz", "Morales", "Ortiz", "Gutiérrez", "Chávez", "Ramos", "Castillo", "Jiménez",
    "Vásquez", "Moreno", "Núñez", "Smith", "Johnson", "Williams", "Brown", "Jones", "Davis",
    "Miller", "Wilson", "Anderson", "Taylor", "Thomas", "Jackson", "White", "Harris", "Martin",
    "Thompson", "Robinson", "Walker", "Young", "King", "Wright", "Scott", "Green", "Baker",
    "Adams", "Nelson", "Carter", "Mitchell", "Washington", "Trần", "Lê", "Phạm", "Hoàng", "Kim",
    "Lee", "Park", "Patel", "Shah", "Singh", "Chen", "Wang", "Zhang", "Okafor", "Mensah",
    "Haddad", "Al-Amin", "Nakamura", "Müller", "Strauß", "Kowalski", "D'Souza", "Smith-Jones",
    "Van der Berg", "MacDonald", "Yılmaz",
)  # fmt: skip
CAMPUS_NAMES = (
    "Lamar", "Travis", "Bowie", "Crockett", "Houston", "Austin", "Zavala", "Chávez", "Jordan",
    "Rayburn", "Navarro", "Seguín", "Ochoa", "Wheatley", "Rosa Parks", "Lincoln", "Jefferson",
    "Roosevelt", "Garza", "Ybarra", "Hidalgo", "Bluebonnet", "Pecan Grove", "Live Oak",
    "Cedar Creek", "Mesquite", "Riverside", "Lakeview", "Hillcrest", "Westwood", "Eastside",
    "Northridge", "Meadowbrook", "Sunset Valley", "Brazos", "Pedernales", "Guadalupe",
    "San Jacinto", "Alamo", "Frontera",
)  # fmt: skip
CAMPUS_PREFIXES = ("", "North ", "South ", "East ", "West ", "Central ", "New ", "Upper ")
ELEMENTARY_SUBJECTS = ("Homeroom", "Math", "Reading, Writing", "Science")
SECONDARY_SUBJECTS = (
    "English", "Math", "Science", "Social Studies", "Spanish", "Art", "Music", "PE",
)  # fmt: skip
SUBJECTS = ELEMENTARY_SUBJECTS + SECONDARY_SUBJECTS
GRADE_LABELS = ("Early Education", "Pre-K", "Kindergarten") + tuple(
    f"Grade {g}" for g in range(1, 13)
)
ROLES = ("teacher", "aide", "administrator")
ROOMS = 150
# One entry per percent: the share of each value among generated people.
GENDERS = ("F",) * 49 + ("M",) * 49 + ("X", None)
HOME_LANGUAGES = (
    ("English",) * 70 + ("Spanish",) * 21
    + ("Vietnamese", "Vietnamese", "Arabic", "Arabic", "Mandarin", "Urdu", "Swahili", "Tagalog")
    + (None,)
)  # fmt: skip

Outcome = Literal["row rejected", "upload rejected", "warning", "accepted"]


@dataclass(frozen=True)
class Injection:
    """Where a bad-input kind lands and what the pipeline should make of it."""

    file: str
    line: int | None  # 1-based, the header is line 1; None: the file as a whole
    column: str | None
    outcome: Outcome
    description: str


INJECTION_DETAILS: dict[str, Injection] = {
    "bad_birth_date": Injection(
        "students.csv", 2, "birth_date", "row rejected",
        "students.csv line 2: an extra, otherwise valid student (in no class) whose birth_date "
        "is '2024-13-45' (not a date). One row rejected.",
    ),
    "spreadsheet_date": Injection(
        "students.csv", 3, "birth_date", "row rejected",
        "students.csv line 3: an extra student (in no class) whose birth_date is a valid "
        "YYYY-MM-DD date followed by ' 00:00', e.g. '2014-01-05 00:00' (re-saved by a "
        "spreadsheet). One row rejected.",
    ),
    "missing_leading_zero": Injection(
        "students.csv", 4, "campus_id", "row rejected",
        "students.csv line 4: an extra student (in no class) whose campus_id lost its leading "
        "zeros, e.g. '15901001' for campus '015901001'. Zero-led lea_id only (ValueError "
        "otherwise). One row rejected.",
    ),
    "bad_grade": Injection(
        "students.csv", 5, "grade", "row rejected",
        "students.csv line 5: an extra student (in no class) whose grade is '13'. One row "
        "rejected.",
    ),
    "duplicate_student_id": Injection(
        "students.csv", 7, "student_id", "row rejected",
        "students.csv lines 6 and 7: two extra students (in no class, different people and "
        "state_ids) with the same student_id; line 7 is the repeat. Nothing else refers to "
        "that student_id.",
    ),
    "unknown_campus": Injection(
        "students.csv", 8, "campus_id", "row rejected",
        "students.csv line 8: an extra student (in no class) whose campus_id is <lea_id>999: "
        "the LEA's prefix, but not in campuses.csv. One row rejected.",
    ),
    "windows_1252": Injection(
        "students.csv", 9, "last_name", "accepted",
        "students.csv is encoded in Windows-1252 (so it is not valid UTF-8); line 9 is an extra, "
        "valid student (in no class) with last_name 'Peña'. Letters outside Windows-1252 are "
        "written as their base letter ('Nguyễn' -> 'Nguyen'). No rejection; one more student.",
    ),
    "bad_email": Injection(
        "staff.csv", 2, "email", "row rejected",
        "staff.csv line 2: an extra staff member (teaching no class) whose email is "
        "'not-an-email'. One row rejected.",
    ),
    "duplicate_email": Injection(
        "staff.csv", 4, "email", "row rejected",
        "staff.csv lines 3 and 4: two extra staff members (teaching no class) whose emails "
        "differ only in case (line 4 is line 3's in upper case); line 4 is the repeat.",
    ),
    "class_unknown_teacher": Injection(
        "classes.csv", 2, "teacher_id", "row rejected",
        "classes.csv line 2: an extra class (no enrollments, no co-teachers) whose teacher_id "
        "is not in staff.csv. One row rejected.",
    ),
    "enrollment_unknown_student": Injection(
        "enrollments.csv", 2, "student_id", "row rejected",
        "enrollments.csv line 2: an extra enrollment in an existing class for a student_id "
        "that is not in students.csv. One row rejected.",
    ),
    "co_teacher_is_teacher": Injection(
        "co_teachers.csv", 2, "staff_id", "row rejected",
        "co_teachers.csv line 2: an extra row naming an existing class (the first class of the "
        "clean classes.csv) with that class's own teacher_id as co-teacher. One row rejected.",
    ),
    "missing_required_column": Injection(
        "students.csv", 1, "last_name", "upload rejected",
        "students.csv has no last_name column (header line 1). The whole upload is rejected.",
    ),
    "missing_file": Injection(
        "enrollments.csv", None, None, "upload rejected",
        "enrollments.csv is not written (and a stale one in the folder is removed). The whole "
        "upload is rejected.",
    ),
    "other_lea_campus": Injection(
        "campuses.csv", 2, "campus_id", "upload rejected",
        "campuses.csv line 2: an extra campus whose campus_id starts with another lea_id "
        "(lea_id + 1, e.g. '101913001' in LEA 101912). The whole upload is rejected.",
    ),
    "bom_crlf": Injection(
        "students.csv", None, None, "accepted",
        "students.csv starts with a UTF-8 byte order mark and ends its lines with CRLF; its "
        "content is unchanged. No rejection.",
    ),
    "sis_prefix_header": Injection(
        "students.csv", 1, "student_id", "upload rejected",
        "students.csv header line 1 says 'STU.student_id' instead of 'student_id' (an SIS "
        "table prefix), so a required column is missing. The whole upload is rejected.",
    ),
    "unknown_column": Injection(
        "students.csv", 1, "locker_number", "warning",
        "students.csv has an extra last column 'locker_number' (header line 1, a value on every "
        "row). A warning only; nothing rejected.",
    ),
}  # fmt: skip
INJECTIONS: dict[str, str] = {name: inj.description for name, inj in INJECTION_DETAILS.items()}
_INCOMPATIBLE = (
    ("windows_1252", "bom_crlf"),
    ("missing_file", "enrollment_unknown_student"),
)


@dataclass(frozen=True)
class LeaSpec:
    """Size of one synthetic LEA; zero counts are derived from `students`."""

    lea_id: str
    students: int
    campuses: int = 0  # 0: students / 600, at least 1, at most 900
    staff: int = 0  # 0: students / 15, at least one per campus
    classes: int = 0  # 0: students / 20, at least 1
    enrollments_per_student: float = 2.5
    co_teacher_share: float = 0.05

    def __post_init__(self) -> None:
        if not re.fullmatch(r"\d{6}", self.lea_id):
            raise ValueError(f"lea_id must be 6 digits, got {self.lea_id!r}")
        if self.students < 1:
            raise ValueError(f"LEA {self.lea_id}: students must be at least 1")
        campuses = self.campuses or min(MAX_CAMPUSES, max(1, round(self.students / 600)))
        if not 1 <= campuses <= MAX_CAMPUSES:
            raise ValueError(f"LEA {self.lea_id}: campuses must be 1-{MAX_CAMPUSES}")
        object.__setattr__(self, "campuses", campuses)
        object.__setattr__(self, "staff", self.staff or max(campuses, round(self.students / 15)))
        object.__setattr__(self, "classes", self.classes or max(1, round(self.students / 20)))


def generate_upload(
    spec: LeaSpec,
    out_dir: Path,
    *,
    seed: int = 0,
    day: int = 1,
    upload_date: date = date(2026, 9, 1),
    inject: Sequence[str] = (),
    adds: float = 0.02,
    drops: float = 0.02,
    updates: float = 0.03,
) -> Path:
    """Write one upload of `spec` as it stands on `day` into `out_dir`, and return `out_dir`.

    Each day after the first, n * rate students (n: the previous day's count,
    rounded half up) are added, dropped and updated, each update changing
    exactly one of grade, last_name or campus_id; their enrollments follow.
    Staff are replaced at rate drops / 2 (the new hire takes the leaver's
    campus, role, classes and co-teaching) and classes change room at rate
    updates / 2. `upload_date` only fixes the school year the students' ages
    fit; it does not advance with `day`. `inject` names keys of INJECTIONS.
    The six upload files in `out_dir` are overwritten (or removed, when an
    injection leaves one out); other files there are left alone.
    """
    if day < 1:
        raise ValueError("day starts at 1")
    unknown = sorted(set(inject) - INJECTIONS.keys())
    if unknown:
        raise ValueError(f"unknown injection(s) {unknown}; known: {sorted(INJECTIONS)}")
    for a, b in _INCOMPATIBLE:
        if a in inject and b in inject:
            raise ValueError(f"injections {a!r} and {b!r} cannot be combined")
    gen = _Generator(spec, seed, upload_date)
    roster = gen.baseline()
    for d in range(2, day + 1):
        roster = gen.next_day(roster, d, adds=adds, drops=drops, updates=updates)
    tables = gen.render(roster)
    tables = gen.inject_rows(tables, set(inject))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in UPLOAD_FILES:
        path = out_dir / name
        if name not in tables:
            path.unlink(missing_ok=True)
        elif name == "students.csv" and "bom_crlf" in inject:
            tables[name].write_csv(path, include_bom=True, line_terminator="\r\n")
        elif name == "students.csv" and "windows_1252" in inject:
            path.write_bytes(tables[name].write_csv().translate(_CP1252_FALLBACK).encode("cp1252"))
        else:
            tables[name].write_csv(path)
    return out_dir


def write_ready(out_dir: Path) -> Path:
    """Mark the upload in `out_dir` complete with an empty `ready` file."""
    path = out_dir / "ready"
    path.write_bytes(b"")
    return path


# -- deterministic hashing -------------------------------------------------

_U32 = 1 << 32


def _u64(value: int) -> pl.Expr:
    return pl.lit(value, dtype=pl.UInt64)


def _hash_values(serials: pl.Series, a: int, b: int) -> pl.Series:
    """Two rounds of lowbias32, a bijection on 32-bit ints: distinct serials never collide.

    Each step is materialised: as one expression, every `x ^ (x >> k)` would
    double the expression tree.
    """
    x = pl.col("x")
    mix = [
        x.xor(x // _u64(1 << 16)),
        (x * _u64(0x7FEB352D)) % _u64(_U32),  # products stay below 2**64
        x.xor(x // _u64(1 << 15)),
        (x * _u64(0x846CA68B)) % _u64(_U32),
        x.xor(x // _u64(1 << 16)),
    ]
    steps = [(x * _u64(0x9E3779B1) + _u64(a)) % _u64(_U32), *mix, x.xor(_u64(b)), *mix]
    frame = pl.DataFrame({"x": serials.cast(pl.UInt64)})
    for step in steps:
        frame = frame.with_columns(x=step)
    return frame["x"]


def _stream_keys(*parts: object) -> tuple[int, int]:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest[:4], "big"), int.from_bytes(digest[4:], "big")


def _share(n: int, rate: float) -> int:
    return math.floor(n * rate + 0.5)


def _pick(values: Sequence[str | None], index: pl.Expr) -> pl.Expr:
    return pl.lit(pl.Series(values, dtype=pl.String)).gather(index)


def _ascii_slug(name: str) -> str:
    folded = "".join(_fold(c) for c in name.lower())
    return re.sub(r"[^a-z]", "", folded)


def _fold(char: str) -> str:
    special = {"ø": "o", "ß": "ss", "đ": "d", "æ": "ae", "œ": "oe", "ł": "l", "ı": "i"}
    if char in special:
        return special[char]
    decomposed = unicodedata.normalize("NFKD", char)
    return "".join(c for c in decomposed if not unicodedata.combining(c)) or char


def _cp1252_fallback() -> dict[int, str]:
    table = {}
    for char in set("".join(FIRST_NAMES + LAST_NAMES + CAMPUS_NAMES)):
        try:
            char.encode("cp1252")
        except UnicodeEncodeError:
            table[ord(char)] = _fold(char)
    return table


_CP1252_FALLBACK = _cp1252_fallback()
FIRST_SLUGS = tuple(_ascii_slug(n) for n in FIRST_NAMES)
LAST_SLUGS = tuple(_ascii_slug(n) for n in LAST_NAMES)


# -- the roster as plain integer state --------------------------------------


@dataclass(frozen=True)
class _Roster:
    students: pl.DataFrame  # serial, grade, campus, last
    staff: pl.DataFrame  # serial, campus, role
    classes: pl.DataFrame  # serial, campus, grade, subject, room, teacher
    enrollments: pl.DataFrame  # student, class
    co_teachers: pl.DataFrame  # class, staff
    next_student: int
    next_staff: int


def _campus_levels(n: int) -> list[tuple[str, int, int]]:
    """(name suffix, lowest grade, highest grade) per campus, high schools first."""
    if n == 1:
        return [("Academy", 0, 14)]
    if n == 2:
        return [("High School", 11, 14), ("K-8 School", 0, 10)]
    high = max(1, round(n * 0.2))
    middle = max(1, round(n * 0.2))
    return (
        [("High School", 11, 14)] * high
        + [("Middle School", 8, 10)] * middle
        + [("Elementary", 0, 7)] * (n - high - middle)
    )


def _pool_bounds(
    items: pl.DataFrame, pool: pl.DataFrame, levels: Sequence[Sequence[str]], min_size: int = 1
) -> tuple[pl.Series, pl.Series]:
    """Per item, the (offset, size) of the pool rows sharing its keys.

    `pool` is sorted by the keys of levels[0], so every level's groups are
    contiguous; an item whose group at one level has fewer than `min_size`
    rows falls back to the next level, then to the whole pool.
    """
    indexed = pool.with_row_index("_pos").with_columns(pl.col("_pos").cast(pl.Int64))
    bounds = pl.DataFrame(
        {"offset": [None] * items.height, "size": [None] * items.height},
        schema={"offset": pl.Int64, "size": pl.Int64},
    )
    for keys in levels:
        groups = (
            indexed.group_by(list(keys))
            .agg(pl.col("_pos").min().alias("o"), pl.len().cast(pl.Int64).alias("n"))
            .filter(pl.col("n") >= min_size)
        )
        found = items.select(keys).join(groups, on=list(keys), how="left", maintain_order="left")
        bounds = bounds.with_columns(
            offset=pl.coalesce("offset", pl.lit(found["o"])),
            size=pl.coalesce("size", pl.lit(found["n"])),
        )
    bounds = bounds.fill_null(0).with_columns(size=pl.col("size").replace(0, max(pool.height, 1)))
    return bounds["offset"], bounds["size"]


class _Generator:
    def __init__(self, spec: LeaSpec, seed: int, upload_date: date) -> None:
        self.spec = spec
        self.seed = seed
        self.school_year_start = (
            upload_date.year if upload_date.month >= 8 else upload_date.year - 1
        )
        self.numeric_ids = int(spec.lea_id) % 2 == 1
        self.student_digits = max(6, len(str(spec.students * 10)))
        self.staff_digits = max(5, len(str(spec.staff * 10)))
        self.class_digits = max(5, len(str(spec.classes * 10)))
        levels = _campus_levels(spec.campuses)
        self.campus_ids = [f"{spec.lea_id}{i + 1:03d}" for i in range(spec.campuses)]
        self.campus_names = [
            f"{CAMPUS_PREFIXES[i // len(CAMPUS_NAMES) % len(CAMPUS_PREFIXES)]}"
            f"{CAMPUS_NAMES[i % len(CAMPUS_NAMES)]} {suffix}"
            for i, (suffix, _, _) in enumerate(levels)
        ]
        # Campuses serving a grade are contiguous: first index and count per grade.
        self.grade_campus_start = []
        self.grade_campus_count = []
        for g in range(len(GRADES)):
            serving = [i for i, (_, lo, hi) in enumerate(levels) if lo <= g <= hi]
            self.grade_campus_start.append(serving[0])
            self.grade_campus_count.append(len(serving))

    # hashing per field ---------------------------------------------------

    def _hash(self, serial: pl.Expr, *stream: object) -> pl.Expr:
        a, b = _stream_keys(self.seed, self.spec.lea_id, *stream)
        return serial.map_batches(
            lambda s: _hash_values(s, a, b), return_dtype=pl.UInt64, is_elementwise=True
        )

    def _uniform(self, serial: pl.Expr, modulus: int, *stream: object) -> pl.Expr:
        """An Int64 in [0, modulus) that depends only on the record and the stream."""
        return (self._hash(serial, *stream) % _u64(modulus)).cast(pl.Int64)

    def _campus_of_grade(self, grade: pl.Expr, draw: pl.Expr) -> pl.Expr:
        start = _int_lookup(self.grade_campus_start, grade)
        return start + draw % _int_lookup(self.grade_campus_count, grade)

    # ids --------------------------------------------------------------------

    def student_id(self, serial: pl.Expr) -> pl.Expr:
        digits = serial.cast(pl.String).str.zfill(self.student_digits + self.numeric_ids)
        return digits if self.numeric_ids else pl.concat_str(pl.lit("S"), digits)

    def staff_id(self, serial: pl.Expr) -> pl.Expr:
        digits = serial.cast(pl.String).str.zfill(self.staff_digits + self.numeric_ids)
        return digits if self.numeric_ids else pl.concat_str(pl.lit("E"), digits)

    def class_id(self, serial: pl.Expr, campus: pl.Expr) -> pl.Expr:
        return pl.concat_str(
            (campus + 1).cast(pl.String).str.zfill(3),
            pl.lit("-"),
            serial.cast(pl.String).str.zfill(self.class_digits),
        )

    def probe_serial(self, digits: int, k: int) -> int:
        """Serials from the top of the ID range, for injected rows only."""
        return 10**digits - 1 - k

    # baseline -----------------------------------------------------------

    def new_students(self, serials: pl.Series) -> pl.DataFrame:
        s = pl.col("serial")
        u = self._uniform(s, 1000, "grade")
        grade = (
            pl.when(u < 10).then(0).when(u < 50).then(1).otherwise(((u - 50) // 73 + 2).clip(2, 14))
        )
        return (
            pl.DataFrame({"serial": serials.cast(pl.Int64)})
            .with_columns(grade=grade, last=self._uniform(s, len(LAST_NAMES), "last"))
            .with_columns(
                campus=self._campus_of_grade(pl.col("grade"), self._uniform(s, 1 << 20, "campus"))
            )
            .select("serial", "grade", "campus", "last")
        )

    def baseline(self) -> _Roster:
        spec = self.spec
        students = self.new_students(pl.int_range(1, spec.students + 1, eager=True))
        by_campus = students.sort("campus", "grade", "serial")

        # The first staff member of each campus is a teacher there; the rest
        # spread over campuses in proportion to their students.
        per_campus = min(spec.campuses, spec.staff)
        j = pl.col("serial") - 1
        spread = ((j - per_campus) * 2 + 1) * spec.students // (2 * max(spec.staff - per_campus, 1))
        staff = (
            pl.DataFrame({"serial": pl.int_range(1, spec.staff + 1, eager=True)})
            .with_columns(
                at=spread.clip(0, spec.students - 1), role_u=self._uniform(j, 100, "role")
            )
            .with_columns(
                campus=pl.when(j < per_campus)
                .then(j)
                .otherwise(pl.lit(by_campus["campus"]).gather(pl.col("at"))),
                role=pl.when((j < per_campus) | (pl.col("role_u") < 85))
                .then(0)
                .when(pl.col("role_u") < 95)
                .then(1)
                .otherwise(2),
            )
            .select("serial", "campus", "role")
        )

        # Classes follow the students: each takes the (campus, grade) of an
        # evenly spaced student in campus/grade order.
        c = pl.col("serial")
        at = ((c - 1) * 2 + 1) * spec.students // (2 * spec.classes)
        grade = pl.lit(by_campus["grade"]).gather(pl.col("at"))
        classes = (
            pl.DataFrame({"serial": pl.int_range(1, spec.classes + 1, eager=True)})
            .with_columns(at=at)
            .with_columns(campus=pl.lit(by_campus["campus"]).gather(pl.col("at")), grade=grade)
            .with_columns(
                subject=pl.when(pl.col("grade") <= 7)
                .then(self._uniform(c, len(ELEMENTARY_SUBJECTS), "subject"))
                .otherwise(
                    len(ELEMENTARY_SUBJECTS) + self._uniform(c, len(SECONDARY_SUBJECTS), "subject")
                ),
                room=1 + self._uniform(c, ROOMS, "room"),
            )
            .drop("at")
        )
        teachers = staff.filter(pl.col("role") == 0).sort("campus", "serial")
        offset, size = _pool_bounds(classes, teachers, [["campus"]])
        pos = offset + self._draw(classes["serial"], "teacher") % size
        classes = classes.with_columns(teacher=teachers["serial"].gather(pos)).sort("serial")

        co_teachers = self._co_teachers(classes, staff)
        enrollments = self.enroll(students, classes)
        return _Roster(
            students, staff, classes, enrollments, co_teachers, spec.students + 1, spec.staff + 1
        )

    def _draw(self, serials: pl.Series, *stream: object) -> pl.Series:
        return pl.select(self._uniform(pl.lit(serials), 1 << 30, *stream)).to_series()

    def _co_teachers(self, classes: pl.DataFrame, staff: pl.DataFrame) -> pl.DataFrame:
        # At least one, so that even a small LEA's co_teachers.csv has a row.
        count = max(
            _share(classes.height, self.spec.co_teacher_share), int(self.spec.co_teacher_share > 0)
        )
        chosen = classes.filter(
            pl.col("serial").is_in(self._ranked(classes, count, "co").implode())
        )
        pool = staff.sort("campus", "serial")
        offset, size = _pool_bounds(chosen, pool, [["campus"]])
        draw = self._draw(chosen["serial"], "co_teacher")
        first = pool["serial"].gather(offset + draw % size)
        second = pool["serial"].gather(offset + (draw + 1) % size)
        return (
            chosen.select(pl.col("serial").alias("class"), "teacher")
            .with_columns(first=first, second=second)
            .with_columns(
                staff=pl.when(pl.col("first") == pl.col("teacher"))
                .then(pl.col("second"))
                .otherwise(pl.col("first"))
            )
            .filter(pl.col("staff") != pl.col("teacher"))
            .select("class", "staff")
        )

    def enroll(self, students: pl.DataFrame, classes: pl.DataFrame) -> pl.DataFrame:
        """Each student's classes: 2-3 at their campus in their grade when there are any."""
        eps = self.spec.enrollments_per_student
        whole, frac = int(eps), round((eps - int(eps)) * 1000)
        pool = classes.sort("campus", "grade", "serial")
        levels = [["campus", "grade"], ["campus"]]
        offset, size = _pool_bounds(students, pool, levels, min_size=math.ceil(eps))
        s = pl.col("student")
        return (
            students.select(pl.col("serial").alias("student"))
            .with_columns(
                offset=offset,
                size=size,
                k=whole + (self._uniform(s, 1000, "k") < frac).cast(pl.Int64),
                draw=self._uniform(s, 1 << 30, "enroll"),
            )
            .with_columns(j=pl.int_ranges(0, pl.col("k")))
            .explode("j", empty_as_null=False)
            .with_columns(
                pos=pl.col("offset") + (pl.col("draw") + pl.col("j")) % pl.col("size"),
            )
            .select("student", pl.lit(pool["serial"]).gather(pl.col("pos")).alias("class"))
            .unique()
            .sort("student", "class")
        )

    # one day's drift ----------------------------------------------------

    def _ranked(self, frame: pl.DataFrame, count: int, *stream: object) -> pl.Series:
        """`count` serials of `frame`, chosen by hash rank."""
        return (
            frame.select("serial", r=self._hash(pl.col("serial"), *stream))
            .sort("r", "serial")
            .head(count)["serial"]
        )

    def next_day(
        self, roster: _Roster, day: int, *, adds: float, drops: float, updates: float
    ) -> _Roster:
        students = roster.students
        n = students.height
        dropped = self._ranked(students, _share(n, drops), "drop", day)
        staying = students.filter(~pl.col("serial").is_in(dropped.implode()))
        updated = self._ranked(staying, min(_share(n, updates), staying.height), "update", day)
        students = self._update_students(staying, updated, day)
        added = self.new_students(
            pl.int_range(roster.next_student, roster.next_student + _share(n, adds), eager=True)
        )

        # Staff turnover: each leaver's replacement takes the same campus, role and classes.
        staff = roster.staff
        leaving = self._ranked(staff, _share(staff.height, drops / 2), "leave", day).sort()
        hires = pl.int_range(roster.next_staff, roster.next_staff + leaving.len(), eager=True)
        staff = staff.with_columns(serial=pl.col("serial").replace(leaving, hires)).sort("serial")

        classes = roster.classes
        moved = self._ranked(classes, _share(classes.height, updates / 2), "room", day)
        shift = 1 + self._uniform(pl.col("serial"), ROOMS - 1, "room", day)
        classes = classes.with_columns(
            teacher=pl.col("teacher").replace(leaving, hires),
            room=pl.when(pl.col("serial").is_in(moved.implode()))
            .then((pl.col("room") - 1 + shift) % ROOMS + 1)
            .otherwise(pl.col("room")),
        )
        co_teachers = roster.co_teachers.with_columns(staff=pl.col("staff").replace(leaving, hires))

        # Enrollments follow the students: dropped ones leave, moved ones and
        # new ones are enrolled afresh.
        before = roster.students.select("serial", old_grade="grade", old_campus="campus")
        moved_students = (pl.col("grade") != pl.col("old_grade")) | (
            pl.col("campus") != pl.col("old_campus")
        )
        changed = students.join(before, on="serial").filter(moved_students).select(students.columns)
        keep = ~pl.col("student").is_in(pl.concat([dropped, changed["serial"]]).implode())
        enrollments = pl.concat(
            [roster.enrollments.filter(keep), self.enroll(pl.concat([changed, added]), classes)]
        ).sort("student", "class")

        return _Roster(
            students=pl.concat([students, added]),
            staff=staff,
            classes=classes,
            enrollments=enrollments,
            co_teachers=co_teachers,
            next_student=roster.next_student + added.height,
            next_staff=roster.next_staff + leaving.len(),
        )

    def _update_students(
        self, students: pl.DataFrame, updated: pl.Series, day: int
    ) -> pl.DataFrame:
        """Change exactly one of grade, last name or campus of each updated student."""
        s = pl.col("serial")
        grade, campus = pl.col("grade"), pl.col("campus")
        count = _int_lookup(self.grade_campus_count, grade)
        start = _int_lookup(self.grade_campus_start, grade)
        kind = self._uniform(s, 3, "kind", day)
        kind = pl.when((kind == 2) & (count < 2)).then(1).otherwise(kind)
        up = ((self._uniform(s, 2, "direction", day) == 0) & (grade < 14)) | (grade == 0)
        new_grade = pl.when(up).then(grade + 1).otherwise(grade - 1)
        new_start = _int_lookup(self.grade_campus_start, new_grade)
        new_count = _int_lookup(self.grade_campus_count, new_grade)
        serves = (campus >= new_start) & (campus < new_start + new_count)
        draw = self._uniform(s, 1 << 20, "move", day)
        other_campus = start + (campus - start + 1 + draw % (count - 1).clip(1)) % count
        other_last = (pl.col("last") + 1 + draw % (len(LAST_NAMES) - 1)) % len(LAST_NAMES)
        is_updated = s.is_in(updated.implode())
        return (
            students.with_columns(_kind=pl.when(is_updated).then(kind))
            .with_columns(
                grade=pl.when(pl.col("_kind") == 0).then(new_grade).otherwise(grade),
                last=pl.when(pl.col("_kind") == 1).then(other_last).otherwise(pl.col("last")),
                campus=pl.when((pl.col("_kind") == 0) & ~serves)
                .then(new_start + draw % new_count)
                .when(pl.col("_kind") == 2)
                .then(other_campus)
                .otherwise(campus),
            )
            .drop("_kind")
        )

    # rendering ----------------------------------------------------------

    def render(self, roster: _Roster) -> dict[str, pl.DataFrame]:
        campuses = pl.DataFrame({"campus_id": self.campus_ids, "campus_name": self.campus_names})
        classes = self.render_classes(roster.classes)
        class_ids = roster.classes.select(
            pl.col("serial").alias("class"),
            self.class_id(pl.col("serial"), pl.col("campus")).alias("class_id"),
        )
        enrollments = roster.enrollments.join(class_ids, on="class", maintain_order="left")
        co_teachers = roster.co_teachers.join(class_ids, on="class", maintain_order="left").sort(
            "class", "staff"
        )
        return {
            "campuses.csv": campuses,
            "staff.csv": self.render_staff(roster.staff),
            "students.csv": self.render_students(roster.students),
            "classes.csv": classes,
            "enrollments.csv": enrollments.select(
                "class_id",
                self.student_id(pl.col("student")).alias("student_id"),
            ),
            "co_teachers.csv": co_teachers.select(
                "class_id",
                self.staff_id(pl.col("staff")).alias("staff_id"),
            ),
        }

    def render_students(self, students: pl.DataFrame) -> pl.DataFrame:
        s = pl.col("serial")
        born_grade = self.new_students(students["serial"])["grade"]
        # Age on 1 September of the school year: KG is 5, grade n is 5 + n,
        # PK 4, EE 1-2; some students repeated a year.
        age = pl.when(pl.col("born_grade") == 0).then(1 + self._uniform(s, 2, "ee_age")).otherwise(
            pl.col("born_grade") + 3
        ) + ((pl.col("born_grade") >= 3) & (self._uniform(s, 100, "retained") < 4)).cast(pl.Int64)
        birth = pl.date(self.school_year_start - age, 9, 1) - pl.duration(
            days=self._uniform(s, 365, "birthday")
        )
        fmt = self._uniform(s, 100, "date_format")
        state_id = (s.cast(pl.Int64) * 3_482_659_071 + _stream_keys(self.spec.lea_id)[0]) % 10**10
        return students.with_columns(born_grade=born_grade).select(
            student_id=self.student_id(s),
            state_id=pl.when(self._uniform(s, 100, "has_state_id") > 0).then(
                state_id.cast(pl.String).str.zfill(10)
            ),
            first_name=_pick(FIRST_NAMES, self._uniform(s, len(FIRST_NAMES), "first")),
            middle_name=pl.when(self._uniform(s, 100, "has_middle") < 55).then(
                _pick(FIRST_NAMES, self._uniform(s, len(FIRST_NAMES), "middle"))
            ),
            last_name=_pick(LAST_NAMES, pl.col("last")),
            birth_date=pl.when(fmt < 90)
            .then(birth.dt.strftime("%Y-%m-%d"))
            .when(fmt < 97)
            .then(birth.dt.strftime("%m/%d/%Y"))
            .otherwise(birth.dt.strftime("%-m/%-d/%Y")),
            grade=_pick(GRADES, pl.col("grade")),
            campus_id=_pick(self.campus_ids, pl.col("campus")),
            gender=_pick(GENDERS, self._uniform(s, 100, "gender")),
            home_language=_pick(HOME_LANGUAGES, self._uniform(s, 100, "language")),
        )

    def render_staff(self, staff: pl.DataFrame) -> pl.DataFrame:
        s = pl.col("serial")
        first = self._uniform(s, len(FIRST_NAMES), "staff_first")
        last = self._uniform(s, len(LAST_NAMES), "staff_last")
        state_staff_id = (
            s.cast(pl.Int64) * 7_013_446_219 + _stream_keys(self.spec.lea_id)[1]
        ) % 10**10
        return staff.select(
            staff_id=self.staff_id(s),
            first_name=_pick(FIRST_NAMES, first),
            last_name=_pick(LAST_NAMES, last),
            email=pl.concat_str(
                _pick(FIRST_SLUGS, first),
                pl.lit("."),
                _pick(LAST_SLUGS, last),
                s.cast(pl.String),
                pl.lit(f"@{self.spec.lea_id}.k12.example.org"),
            ),
            campus_id=_pick(self.campus_ids, pl.col("campus")),
            role=_pick(ROLES, pl.col("role")),
            state_staff_id=pl.when(self._uniform(s, 100, "has_state_staff_id") >= 20).then(
                state_staff_id.cast(pl.String).str.zfill(10)
            ),
        )

    def render_classes(self, classes: pl.DataFrame) -> pl.DataFrame:
        s = pl.col("serial")
        return classes.select(
            class_id=self.class_id(s, pl.col("campus")),
            campus_id=_pick(self.campus_ids, pl.col("campus")),
            class_name=pl.concat_str(
                _pick(GRADE_LABELS, pl.col("grade")),
                pl.lit(" "),
                _pick(SUBJECTS, pl.col("subject")),
                pl.lit(" - Rm "),
                pl.col("room").cast(pl.String),
            ),
            teacher_id=self.staff_id(pl.col("teacher")),
            grade=_pick(GRADES, pl.col("grade")),
            school_year=pl.lit(f"{self.school_year_start}-{self.school_year_start + 1}"),
        )

    # injections ---------------------------------------------------------

    def inject_rows(
        self, tables: dict[str, pl.DataFrame], inject: set[str]
    ) -> dict[str, pl.DataFrame]:
        """Apply the injections to the rendered tables (encodings are applied on write)."""
        tables = dict(tables)
        lea = self.spec.lea_id
        probes = self.render_students(
            self.new_students(
                pl.Series([self.probe_serial(self.student_digits, k) for k in range(10)])
            )
        )

        def probe(k: int, **values: str) -> pl.DataFrame:
            return probes.slice(k, 1).with_columns(
                **{col: pl.lit(v, dtype=pl.String) for col, v in values.items()}
            )

        students: list[tuple[int, pl.DataFrame]] = []
        if "bad_birth_date" in inject:
            students.append((2, probe(0, birth_date="2024-13-45")))
        if "spreadsheet_date" in inject:
            row = probe(1)
            iso = self._iso_birth_date(row["birth_date"][0])
            students.append((3, row.with_columns(birth_date=pl.lit(f"{iso} 00:00"))))
        if "missing_leading_zero" in inject:
            if not lea.startswith("0"):
                raise ValueError(f"missing_leading_zero needs a zero-led lea_id, not {lea}")
            row = probe(2)
            students.append((4, row.with_columns(pl.col("campus_id").str.strip_chars_start("0"))))
        if "bad_grade" in inject:
            students.append((5, probe(3, grade="13")))
        if "duplicate_student_id" in inject:
            first = probe(4)
            students.append((6, first))
            students.append((7, probe(5, student_id=first["student_id"][0])))
        if "unknown_campus" in inject:
            students.append((8, probe(6, campus_id=f"{lea}999")))
        if "windows_1252" in inject:
            students.append((9, probe(7, last_name="Peña")))
        frame = _insert_rows(tables["students.csv"], students, "students.csv")
        if "unknown_column" in inject:
            row = pl.int_range(pl.len())
            locker = pl.format("{}-{}", _pick(tuple("ABCD"), row % 4), row % 900 + 100)
            frame = frame.with_columns(locker_number=locker)
        if "missing_required_column" in inject:
            frame = frame.drop("last_name")
        if "sis_prefix_header" in inject:
            frame = frame.rename({"student_id": "STU.student_id"})
        tables["students.csv"] = frame

        staff_probes = self.render_staff(
            pl.DataFrame(
                {
                    "serial": [self.probe_serial(self.staff_digits, k) for k in range(3)],
                    "campus": [0] * 3,
                    "role": [0] * 3,
                }
            )
        )
        staff: list[tuple[int, pl.DataFrame]] = []
        if "bad_email" in inject:
            staff.append((2, staff_probes.slice(0, 1).with_columns(email=pl.lit("not-an-email"))))
        if "duplicate_email" in inject:
            first = staff_probes.slice(1, 1)
            staff.append((3, first))
            staff.append(
                (4, staff_probes.slice(2, 1).with_columns(email=first["email"].str.to_uppercase()))
            )
        tables["staff.csv"] = _insert_rows(tables["staff.csv"], staff, "staff.csv")

        first_class = tables["classes.csv"].row(0, named=True)
        if "class_unknown_teacher" in inject:
            probe_class = pl.DataFrame(
                {
                    "serial": [self.probe_serial(self.class_digits, 0)],
                    "campus": [0], "grade": [5], "subject": [1], "room": [1],
                    "teacher": [self.probe_serial(self.staff_digits, 9)],
                }
            )  # fmt: skip
            row = self.render_classes(probe_class)
            tables["classes.csv"] = _insert_rows(tables["classes.csv"], [(2, row)], "classes.csv")
        if "enrollment_unknown_student" in inject:
            row = pl.DataFrame(
                {"class_id": [first_class["class_id"]], "student_id": [probes["student_id"][9]]}
            )
            tables["enrollments.csv"] = _insert_rows(
                tables["enrollments.csv"], [(2, row)], "enrollments.csv"
            )
        if "co_teacher_is_teacher" in inject:
            row = pl.DataFrame(
                {"class_id": [first_class["class_id"]], "staff_id": [first_class["teacher_id"]]}
            )
            tables["co_teachers.csv"] = _insert_rows(
                tables["co_teachers.csv"], [(2, row)], "co_teachers.csv"
            )
        if "other_lea_campus" in inject:
            other = f"{(int(lea) + 1) % 1_000_000:06d}"
            row = pl.DataFrame({"campus_id": [f"{other}001"], "campus_name": ["Lamar High School"]})
            tables["campuses.csv"] = _insert_rows(
                tables["campuses.csv"], [(2, row)], "campuses.csv"
            )
        if "missing_file" in inject:
            del tables["enrollments.csv"]
        return tables

    @staticmethod
    def _iso_birth_date(value: str) -> str:
        if "/" not in value:
            return value
        month, day_, year = value.split("/")
        return f"{year}-{int(month):02d}-{int(day_):02d}"


def _int_lookup(values: Sequence[int], index: pl.Expr) -> pl.Expr:
    return pl.lit(pl.Series(values, dtype=pl.Int64)).gather(index)


def _insert_rows(
    frame: pl.DataFrame, inserts: list[tuple[int, pl.DataFrame]], file: str
) -> pl.DataFrame:
    """Insert rows so each lands on its line (1-based, header = 1), lowest line first."""
    for line, rows in sorted(inserts, key=lambda item: item[0]):
        at = line - 2
        if frame.height < at:
            raise ValueError(f"{file} has {frame.height} rows, too few to inject at line {line}")
        frame = pl.concat([frame.head(at), rows.select(frame.columns), frame.slice(at)])
    return frame


# -- command line -------------------------------------------------------


def _parse_lea(value: str) -> LeaSpec:
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected LEA_ID:STUDENTS[:CAMPUSES], got {value!r}")
    campuses = int(parts[2]) if len(parts) == 3 else 0
    try:
        return LeaSpec(parts[0], int(parts[1]), campuses=campuses)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m rostering_demo.generator`."""
    parser = argparse.ArgumentParser(
        prog="python -m rostering_demo.generator", description=main.__doc__
    )
    parser.add_argument("--out", type=Path, help="root folder; each LEA goes to OUT/<lea_id>/inbox")
    parser.add_argument(
        "--lea", type=_parse_lea, action="append", default=[], metavar="LEA_ID:STUDENTS[:CAMPUSES]",
        help="an LEA to write: its 6-digit lea_id, its number of students and, optionally, of "
        "campuses (default: one per 600 students); repeat for more LEAs",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=0,
        help="random seed (default 0): the same seed, LEA and day give the same files",
    )  # fmt: skip
    parser.add_argument(
        "--day", type=int, default=1,
        help="which day's upload to write (default 1, the first); each later day adds, drops "
        "and updates about 2%%, 2%% and 3%% of the previous day's students",
    )  # fmt: skip
    parser.add_argument(
        "--date", type=date.fromisoformat, default=date(2026, 9, 1),
        help="the school year's date the students' ages fit (default 2026-09-01); "
        "it does not advance with --day",
    )  # fmt: skip
    parser.add_argument(
        "--inject", action="append", default=[], metavar="[LEA_ID:]NAME",
        help="bad input to inject (into every LEA, or only LEA_ID); see --list-injections",
    )  # fmt: skip
    parser.add_argument("--ready", action="store_true", help="also write a `ready` file")
    parser.add_argument(
        "--list-injections", action="store_true", help="list what --inject knows, and exit"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Write synthetic uploads to OUT/<lea_id>/inbox/, as an LEA's SFTP folder would hold."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_injections:
        for name, description in INJECTIONS.items():
            print(f"{name}: {description}")
        return
    if args.out is None or not args.lea:
        parser.error("--out and at least one --lea are required")
    for spec in args.lea:
        inject = [
            item.rpartition(":")[2]
            for item in args.inject
            if item.rpartition(":")[0] in ("", spec.lea_id)
        ]
        out_dir = args.out / spec.lea_id / "inbox"
        try:
            generate_upload(
                spec, out_dir, seed=args.seed, day=args.day, upload_date=args.date, inject=inject
            )
        except ValueError as err:
            parser.error(f"LEA {spec.lea_id}: {err}")
        if args.ready:
            write_ready(out_dir)
        print(
            f"{out_dir}: {spec.students} students, day {args.day}, injected {inject or 'nothing'}"
        )


if __name__ == "__main__":
    main()
