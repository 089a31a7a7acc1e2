"""The warehouse's tables of record (a contract other systems query), and their upkeep."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..upload_spec.files import UPLOAD_FILES, UploadFile
from .postgres import PostgresConnection

if TYPE_CHECKING:
    from .connection import Connection

BASE_DDL = """
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


def roster_table_ddl(spec: UploadFile) -> str:
    """The roster table of an entity of the registry: the LEA, the entity's columns (its key
    not null, its dates as dates, the rest text), the upload that last wrote the row."""
    columns = [
        f"{c} {'date' if c in spec.dates else 'varchar'}{' not null' if c in spec.key else ''}"
        for c in spec.columns
    ]
    return (
        f"create table if not exists roster.{spec.entity} (lea_id varchar not null, "
        + ", ".join(columns)
        + ", upload_id varchar not null);"
    )


#: Every table of record; running it again changes nothing.
DDL = BASE_DDL + "\n".join(roster_table_ddl(spec) for spec in UPLOAD_FILES) + "\n"


def lea_index_ddl(spec: UploadFile) -> str:
    """The index a read of one LEA's rows uses: the LEA and the entity's key, so a record's
    story finds one student, class or staff member directly. A link table's key is its whole
    row (enrollments, co-teachers): its index is the LEA's alone. A day's enrollment adds went
    into a key index at scattered places, touching most of its pages: 100k new enrollments of
    a 1M-student LEA took 1.1-1.2 s to COPY with it, 0.3-0.4 s with the LEA's index (its rows
    are found the same way, by the LEA; the apply's delete and the checks hash-join them)."""
    if set(spec.columns) == set(spec.key):
        return (
            f"drop index if exists roster.{spec.entity}_lea;"  # (lea_id, key) before 2026-12-07
            f" create index if not exists {spec.entity}_by_lea on roster.{spec.entity} (lea_id);"
        )
    return (
        f"create index if not exists {spec.entity}_lea on roster.{spec.entity}"
        f" (lea_id, {', '.join(spec.key)});"
    )


#: PostgreSQL's additions to the DDL: indexes for the reads of one LEA or one upload, and one
#: active account per login statewide, checked by the database (write_accounts checks it
#: before its transaction commits: two LEAs' runs at once cannot both take a login). The
#: check is deferrable so that one upload may swap two staff members' emails.
POSTGRES_DDL = (
    """
create index if not exists uploads_lea on ingest.uploads (lea_id, received_at);
create index if not exists uploads_source_key on ingest.uploads (source_key);
create index if not exists uploads_run on ingest.uploads (run_id);
create index if not exists decisions_upload on ingest.decisions (upload_id);
create index if not exists rejections_upload on quality.rejections (upload_id);
create index if not exists changes_lea on roster.changes (lea_id, applied_at);
create index if not exists changes_upload on roster.changes (upload_id);
do $$ begin
    if not exists (select 1 from pg_constraint where conname = 'accounts_one_active_login') then
        alter table roster.accounts add constraint accounts_one_active_login
            exclude using btree (lower(username) with =) where (status = 'active')
            deferrable initially deferred;
    end if;
end $$;
"""
    + "\n".join(lea_index_ddl(spec) for spec in UPLOAD_FILES)
    + "\n"
)

#: Tables whose rows are deleted and replaced as uploads apply (roster.changes only grows).
COMPACTED_TABLES = (*(f"roster.{spec.entity}" for spec in UPLOAD_FILES), "roster.accounts")


def compact_roster(conn: Connection) -> dict[str, tuple[int, int]]:
    """Rewrite each roster table without its deleted rows, ordered by LEA.

    Applies leave deleted rows in place (vacuuming is off at their checkpoints); this drops
    them and stores each LEA's rows together, so a read of one LEA skips the row groups of
    every other. Each table is rewritten in its own transaction: a reader sees the table
    before or after, never half. Returns row groups (before, after) per table.

    On PostgreSQL, autovacuum reclaims deleted rows as they go and the LEA indexes find its
    rows: this vacuums and analyses each table, and returns its pages (before, after)."""
    if isinstance(conn, PostgresConnection):
        return {table: _vacuum(conn, table) for table in COMPACTED_TABLES}
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


def _vacuum(conn: PostgresConnection, table: str) -> tuple[int, int]:
    pages = "select pg_relation_size(?::regclass) / current_setting('block_size')::int"
    before = conn.execute(pages, [table]).fetchone()[0]
    conn.execute(f"vacuum (analyze) {table}")
    return before, conn.execute(pages, [table]).fetchone()[0]


def _row_groups(conn: Connection, table: str) -> int:
    return conn.execute(
        f"select count(distinct row_group_id) from pragma_storage_info('{table}')"
    ).fetchone()[0]
