"""The warehouse's tables of record (a contract other systems query), and their upkeep."""

from __future__ import annotations

import duckdb

DDL = """
create schema if not exists ingest;
create schema if not exists quality;
create schema if not exists roster;
create table if not exists ingest.uploads (
    upload_id varchar primary key,
    lea_id varchar not null,
    received_at timestamptz not null,
    source_key varchar not null,
    fingerprint varchar not null,
    files json not null,
    status varchar not null,
    reason varchar,
    registered_at timestamptz not null,
    decided_at timestamptz,
    run_id varchar
);
alter table ingest.uploads add column if not exists held_by varchar;
alter table ingest.uploads add column if not exists operator varchar;
create table if not exists ingest.decisions (
    upload_id varchar not null,
    lea_id varchar not null,
    status varchar not null,
    reason varchar,
    held_by varchar,
    operator varchar,
    decided_by varchar not null,
    changes json,
    decided_at timestamptz not null
);
create table if not exists quality.rejections (
    upload_id varchar not null,
    lea_id varchar not null,
    file varchar,
    line bigint,
    "column" varchar,
    rule varchar not null,
    value varchar,
    fix varchar,
    level varchar not null,
    recorded_at timestamptz not null
);
create table if not exists roster.campuses (
    lea_id varchar not null, campus_id varchar not null, campus_name varchar,
    upload_id varchar not null
);
create table if not exists roster.staff (
    lea_id varchar not null, staff_id varchar not null, first_name varchar, last_name varchar,
    email varchar, campus_id varchar, role varchar, state_staff_id varchar,
    upload_id varchar not null
);
create table if not exists roster.students (
    lea_id varchar not null, student_id varchar not null, first_name varchar,
    last_name varchar, birth_date date, grade varchar, campus_id varchar, state_id varchar,
    middle_name varchar, gender varchar, home_language varchar, upload_id varchar not null
);
create table if not exists roster.classes (
    lea_id varchar not null, class_id varchar not null, campus_id varchar, class_name varchar,
    teacher_id varchar, grade varchar, school_year varchar, upload_id varchar not null
);
create table if not exists roster.enrollments (
    lea_id varchar not null, class_id varchar not null, student_id varchar not null,
    upload_id varchar not null
);
create table if not exists roster.co_teachers (
    lea_id varchar not null, class_id varchar not null, staff_id varchar not null,
    upload_id varchar not null
);
create table if not exists roster.accounts (
    lea_id varchar not null,
    staff_id varchar not null,
    username varchar not null,
    status varchar not null,
    created_at timestamptz not null,
    deactivated_at timestamptz,
    updated_at timestamptz not null,
    primary key (lea_id, staff_id)
);
create table if not exists roster.changes (
    upload_id varchar not null,
    lea_id varchar not null,
    entity varchar not null,
    key varchar not null,
    change varchar not null,
    old_values json,
    new_values json,
    source_line bigint,
    applied_at timestamptz not null
);
"""


#: Tables whose rows are deleted and replaced as uploads apply (roster.changes only grows).
COMPACTED_TABLES = (
    "roster.campuses",
    "roster.staff",
    "roster.students",
    "roster.classes",
    "roster.enrollments",
    "roster.co_teachers",
    "roster.accounts",
)


def compact_roster(conn: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int]]:
    """Rewrite each roster table without its deleted rows, ordered by LEA.

    Applies leave deleted rows in place (vacuuming is off at their checkpoints); this drops
    them and stores each LEA's rows together, so a read of one LEA skips the row groups of
    every other. Each table is rewritten in its own transaction: a reader sees the table
    before or after, never half. Returns row groups (before, after) per table."""
    groups = {}
    for table in COMPACTED_TABLES:
        before = _row_groups(conn, table)
        conn.execute("begin transaction")
        try:
            conn.execute(f"create temp table _compacted as select * from {table} order by lea_id")
            conn.execute(f"delete from {table}")
            conn.execute(f"insert into {table} select * from _compacted")
            conn.execute("drop table _compacted")
            conn.execute("commit")
        except BaseException:
            conn.execute("rollback")
            raise
        conn.execute("checkpoint")
        groups[table] = (before, _row_groups(conn, table))
    return groups


def _row_groups(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    return conn.execute(
        f"select count(distinct row_group_id) from pragma_storage_info('{table}')"
    ).fetchone()[0]
