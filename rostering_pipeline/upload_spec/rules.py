"""Every row rule of UPLOAD_SPEC.md, each stated once, in the spec's words.

A rule is a polars expression that is true for a good, present value; blank values are
judged only by `required`. `schema_for` turns a file's rules into a pandera schema.
Values the spec lets the LEA write several ways (grades, birth dates) are read once into a
derived column (`derived_columns`); the rules judge that column and the accepted rows take it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import pandera.polars as pa
import polars as pl

from .files import CAMPUSES, CLASSES, CO_TEACHERS, ENROLLMENTS, STAFF, STUDENTS, UploadFile

GRADES = ("EE", "PK", "KG", *(f"{g:02d}" for g in range(1, 13)))
GRADE_ALIASES = {
    **{g: g for g in GRADES},
    "K": "KG",
    "PRE-K": "PK",
    "PK3": "PK",
    "PK4": "PK",
    **{str(g): f"{g:02d}" for g in range(1, 10)},
}
ROLES = ("teacher", "aide", "administrator")
GENDERS = ("F", "M", "X")
MAX_AGE_YEARS = 22

LOCAL_ID = r"^[A-Za-z0-9_-]{1,32}$"
#: A OneRoster sourcedId: 1–255 characters, none of them a control character.
SOURCED_ID = r"^[^\x00-\x1f\x7f]{1,255}$"
EMAIL = r"^[^@\s,;<>]+@[^@\s,;<>]+\.[A-Za-z]{2,}$"
SCHOOL_YEAR = r"^\d{4}-\d{4}$"
#: Control characters no value may hold: every one but tab, and the line breaks (LF, CR) a
#: quoted value may contain. C1 controls (U+0080–U+009F) included: in a decoded value they
#: are never text (Windows-1252 decodes those bytes to printable characters).
CONTROL_CODES = (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0))
CONTROL_CHARACTER = "[" + "".join(f"\\x{code:02x}" for code in CONTROL_CODES) + "]"
#: Every byte but the C0 controls and DEL (as in CONTROL_CODES): `bytes.translate` deletes
#: these, leaving only the bytes that could be a control character.
_NOT_C0_CONTROL = bytes(b for b in range(256) if b not in CONTROL_CODES or b >= 0x80)
_UTF8_C1_CONTROL = re.compile(rb"\xc2[\x80-\x9f]")


def parse_birth_date(value: pl.Expr) -> pl.Expr:
    """`YYYY-MM-DD`, `MM/DD/YYYY` or `M/D/YYYY`; anything else is null."""
    return pl.coalesce(
        value.str.strptime(pl.Date, "%Y-%m-%d", strict=False, exact=True),
        pl.when(value.str.contains(r"^\d{1,2}/\d{1,2}/\d{4}$")).then(
            value.str.strptime(pl.Date, "%m/%d/%Y", strict=False, exact=True)
        ),
    )


def normalize_grade(value: pl.Expr) -> pl.Expr:
    return value.str.to_uppercase().replace_strict(GRADE_ALIASES, default=None)


#: The column each rule on a spelled-many-ways value judges: the value as the spec reads it.
PARSED_BIRTH_DATE = "_birth_date"
NORMAL_GRADE = "_grade"


def derived_columns(spec: UploadFile) -> dict[str, pl.Expr]:
    """What the rules of `spec` judge besides the text as written, computed once per file."""
    if spec.file_name == STUDENTS.file_name:
        return {
            PARSED_BIRTH_DATE: parse_birth_date(pl.col("birth_date")),
            NORMAL_GRADE: normalize_grade(pl.col("grade")),
        }
    if spec.file_name == CLASSES.file_name:
        return {NORMAL_GRADE: normalize_grade(pl.col("grade"))}
    return {}


def oldest_birth_date(upload_date: date) -> date:
    """Born on or before this day, a student is 23 or older on `upload_date`.

    A 29 February birthday falls on 1 March in other years.
    """
    year = upload_date.year - MAX_AGE_YEARS - 1
    try:
        return upload_date.replace(year=year)
    except ValueError:  # upload on 29 February
        return date(year, 3, 1) - timedelta(days=1)


@dataclass(frozen=True)
class Rule:
    """One rule on one column: `error` is the spec's words, `fix` tells the LEA what to do."""

    column: str
    error: str
    fix: str
    passes: Callable[[pl.Expr], pl.Expr]
    reads: str | None = None  # a derived column judged instead of the text as written
    #: A cheap test that every value passes (one boolean); when true, `passes` is skipped.
    surely_all_pass: Callable[[pl.Expr], pl.Expr] | None = None


def without_control_characters(value: pl.Expr) -> pl.Expr:
    """The value as a report can show it: each control character written as `\\xNN`."""
    return value.str.replace_many(
        [chr(code) for code in CONTROL_CODES], [f"\\x{code:02x}" for code in CONTROL_CODES]
    )


def may_hold_control_characters(data: bytes) -> bool:
    """False when no value read from these bytes can hold a control character, whichever
    accepted encoding they are in: the fast path of the rule below, which would otherwise
    search every value of every column (~0.08 s at 200,000 students; this is ~0.01 s).

    Conservative: a zip's compressed bytes, or a Windows-1252 file with the bytes of a UTF-8
    C1 control, say True and every value is searched."""
    if data.translate(None, _NOT_C0_CONTROL):
        return True
    return b"\xc2" in data and _UTF8_C1_CONTROL.search(data) is not None


def _no_control_character(column: str) -> Rule:
    """Applies to every column: a NUL or an escape code is not a blank value, so `required`
    lets it through, and it would reach the roster (and the LEA's apps) invisibly."""
    return Rule(
        column,
        "value contains a control character",
        "Remove the invisible character (shown as \\x followed by its code) from this value in "
        "the SIS, and export again; tabs, and line breaks inside quoted values, are allowed.",
        lambda v: ~v.str.contains(CONTROL_CHARACTER),
        surely_all_pass=lambda v: ~v.str.contains(CONTROL_CHARACTER).any(),
    )


def _length(column: str, low: int, high: int) -> Rule:
    span = f"{low}–{high}" if low else f"up to {high}"
    return Rule(
        column,
        f"{column} must be {span} characters",
        f"Shorten or fill in {column} to {span} characters.",
        lambda v: v.str.len_chars().is_between(low, high),
    )


@dataclass(frozen=True)
class Dialect:
    """What a format's IDs look like, and which native required columns it may leave blank.

    The native format's IDs are LEA-local codes; a OneRoster sourcedId is any 1–255
    characters (GUIDs are the common case), and OneRoster has no required birth date.
    """

    id_pattern: str = LOCAL_ID
    id_words: str = "1–32 letters, digits, '-' or '_'"
    id_fix: str = "Use only letters, digits, '-' and '_' in {column} (no spaces or punctuation)."
    optional: frozenset[tuple[str, str]] = frozenset()

    def required_columns(self, spec: UploadFile) -> tuple[str, ...]:
        return tuple(c for c in spec.required_columns if (spec.entity, c) not in self.optional)


NATIVE = Dialect()
ONEROSTER = Dialect(
    SOURCED_ID,
    "1–255 characters, none of them a control character",
    "Shorten {column} to at most 255 characters and remove tabs, line breaks and other "
    "control characters from it.",
    frozenset({("students", "birth_date")}),
)


def _local_id(column: str, dialect: Dialect) -> Rule:
    return Rule(
        column,
        f"{column} must be {dialect.id_words}",
        dialect.id_fix.format(column=column),
        lambda v: v.str.contains(dialect.id_pattern),
    )


def _campus_id(column: str = "campus_id") -> Rule:
    return Rule(
        column,
        f"{column} must be 9 digits, the first 6 being the LEA's lea_id",
        f"Use the full 9-digit county-district-campus number in {column}.",
        lambda v: v.str.contains(r"^\d{9}$"),
    )


def _digits(column: str, n: int, what: str) -> Rule:
    return Rule(
        column,
        f"{column} must be {n} digits",
        f"Use the {n}-digit {what} in {column}, or leave it blank.",
        lambda v: v.str.contains(rf"^\d{{{n}}}$"),
    )


def _grade(column: str = "grade") -> Rule:
    return Rule(
        column,
        f"{column} must be one of EE, PK, KG, 01–12",
        "Use EE, PK, KG or 01–12 (K, 1–9, Pre-K, PK3 and PK4 are also understood).",
        lambda v: v.is_not_null(),
        reads=NORMAL_GRADE,
    )


def _birth_date_rules(upload_date: date) -> list[Rule]:
    oldest = oldest_birth_date(upload_date)
    return [
        Rule(
            "birth_date",
            "birth_date must be a date written YYYY-MM-DD, MM/DD/YYYY or M/D/YYYY",
            "Write the date as YYYY-MM-DD, e.g. 2015-09-01.",
            lambda v: v.is_not_null(),
            reads=PARSED_BIRTH_DATE,
        ),
        Rule(
            "birth_date",
            "birth_date must not be after the upload date",
            "Correct the birth date in the SIS; it lies in the future.",
            lambda v: v.is_null() | (v <= upload_date),
            reads=PARSED_BIRTH_DATE,
        ),
        Rule(
            "birth_date",
            f"the student must be at most {MAX_AGE_YEARS} years old on the upload date",
            f"Correct the birth date in the SIS; it makes the student older than {MAX_AGE_YEARS}.",
            lambda v: v.is_null() | (v > oldest),
            reads=PARSED_BIRTH_DATE,
        ),
    ]


def _choice(column: str, allowed: tuple[str, ...], case: str = "as is") -> Rule:
    shown = ", ".join(allowed)
    norm = {"lower": str.lower, "upper": str.upper}.get(case)
    return Rule(
        column,
        f"{column} must be one of {shown}",
        f"Use one of {shown} in {column}, or leave it blank.",
        lambda v: (v.str.to_lowercase() if norm is str.lower else v.str.to_uppercase()).is_in(
            list(allowed)
        ),
    )


def _email() -> Rule:
    return Rule(
        "email",
        "email must be a valid address",
        "Give the staff member's full school email address, e.g. name@district.org.",
        lambda v: v.str.contains(EMAIL),
    )


def _unique(column: str, what: str, *, case_insensitive: bool = False) -> Rule:
    words = " (ignoring case)" if case_insensitive else ""

    def compared(v: pl.Expr) -> pl.Expr:
        return v.str.to_lowercase() if case_insensitive else v

    return Rule(
        column,
        f"{column} must be unique in the file{words}",
        f"Each {what} must appear once; every row sharing this {column} was rejected.",
        lambda v: ~compared(v).is_duplicated(),
        # Distinct hashes mean distinct values; only a shared hash needs the exact look.
        surely_all_pass=lambda v: compared(v).drop_nulls().hash().n_unique() == v.count(),
    )


LOGIN_TAKEN = "email is already the login of an active staff account in another LEA"


def _login_not_taken(taken_logins: frozenset[str]) -> Rule:
    """A login belongs to one LEA: another LEA's staff member must never be merged into this one.

    `taken_logins` are the lower-cased usernames of other LEAs' active accounts, so the row is
    refused (and reported to the LEA that sent it second) instead of taking over that account.
    An inactive account's login is free: a teacher who moved keeps their address.
    """
    taken = sorted(taken_logins)
    return Rule(
        "email",
        LOGIN_TAKEN,
        "Use the staff member's own address at this LEA. If the person has moved here, the "
        "other LEA must first leave them out of its upload: the login then passes to this "
        "LEA on its next upload.",
        lambda v: ~v.str.to_lowercase().is_in(taken),
    )


def rules_for(
    spec: UploadFile,
    upload_date: date,
    taken_logins: frozenset[str] = frozenset(),
    dialect: Dialect = NATIVE,
    *,
    control_characters: bool = True,
) -> list[Rule]:
    """The row rules of one file; required columns are checked separately by `schema_for`.

    `taken_logins` (other LEAs' account logins) only matter to staff.csv's email.
    `control_characters` False (the upload's bytes hold none: `may_hold_control_characters`)
    leaves out the rule that searches every value for one.
    """

    def _id(column: str) -> Rule:
        return _local_id(column, dialect)

    by_file: dict[str, list[Rule]] = {
        CAMPUSES.file_name: [
            _campus_id(),
            _unique("campus_id", "campus"),
            _length("campus_name", 1, 100),
        ],
        STAFF.file_name: [
            _id("staff_id"),
            _unique("staff_id", "staff member"),
            _length("first_name", 1, 60),
            _length("last_name", 1, 60),
            _email(),
            _unique("email", "email address", case_insensitive=True),
            _login_not_taken(taken_logins),
            _campus_id(),
            _choice("role", ROLES, "lower"),
            _digits("state_staff_id", 10, "TX unique staff ID"),
        ],
        STUDENTS.file_name: [
            _id("student_id"),
            _unique("student_id", "student"),
            _digits("state_id", 10, "TX unique student ID"),
            _unique("state_id", "state_id"),
            _length("first_name", 1, 60),
            _length("middle_name", 0, 60),
            _length("last_name", 1, 60),
            *_birth_date_rules(upload_date),
            _grade(),
            _campus_id(),
            _choice("gender", GENDERS, "upper"),
            _length("home_language", 0, 40),
        ],
        CLASSES.file_name: [
            _id("class_id"),
            _unique("class_id", "class"),
            _campus_id(),
            _length("class_name", 1, 100),
            _id("teacher_id"),
            _grade(),
            Rule(
                "school_year",
                "school_year must be written YYYY-YYYY",
                "Write the school year as e.g. 2026-2027, or leave it blank.",
                lambda v: v.str.contains(SCHOOL_YEAR),
            ),
        ],
        ENROLLMENTS.file_name: [_id("class_id"), _id("student_id")],
        CO_TEACHERS.file_name: [_id("class_id"), _id("staff_id")],
    }
    if not control_characters:
        return by_file[spec.file_name]
    return [*by_file[spec.file_name], *map(_no_control_character, spec.columns)]


REQUIRED = "a required value is missing"


def schema_for(
    spec: UploadFile,
    upload_date: date,
    taken_logins: frozenset[str] = frozenset(),
    dialect: Dialect = NATIVE,
    *,
    control_characters: bool = True,
) -> pa.DataFrameSchema:
    """A pandera schema of one file's text columns: required columns non-null, plus its rules."""
    rules = rules_for(
        spec, upload_date, taken_logins, dialect, control_characters=control_characters
    )
    required = dialect.required_columns(spec)
    columns = {
        column: pa.Column(
            str,
            nullable=column not in required,
            checks=[_check(rule) for rule in rules if rule.column == column],
        )
        for column in spec.columns
    }
    return pa.DataFrameSchema(columns, strict=False, name=spec.file_name)


def _check(rule: Rule) -> pa.Check:
    def judge(data: pa.PolarsData) -> pl.LazyFrame:
        judged = pl.col(rule.reads or data.key)
        if rule.surely_all_pass is not None:
            if data.lazyframe.select(rule.surely_all_pass(judged)).collect().item():
                return data.lazyframe.select(pl.repeat(True, pl.len()).alias(data.key))
        return data.lazyframe.select(pl.col(data.key).is_null() | rule.passes(judged))

    return pa.Check(judge, error=rule.error)
