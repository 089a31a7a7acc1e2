"""The warehouse: the tables of record (ingest, quality, roster) and the one way to reach them.

Every SQL statement against the warehouse file lives in this package; the rest of the
pipeline calls its functions with the connection `WarehouseResource.connect` yields (DuckDB
over in-memory frames, as validation and the diff use it, is not the warehouse). Two backends
implement these modules: the DuckDB file (the embedded default) and PostgreSQL
(`postgres.py`, chosen by `postgres_dsn`; required when runs execute on several hosts). The
SQL is written once, in the dialect both engines take:

- `connection`: opening the file, the lock policy (who waits how long; `WarehouseBusy`),
  `transaction`, frames made readable in SQL (`registered`);
- `schema`: the tables' DDL and their nightly compaction;
- `uploads`: ingest.uploads and ingest.decisions (written by the ledger only);
- `rejections`: quality.rejections;
- `roster`: roster.* (the diff's differing rows, the apply's writes, accounts, checks);
- `reports`: reads for people (the sync summary, a record's story, the change log);
- `postgres`: PostgreSQL's connection, frames in SQL (COPY), bulk reads, the per-LEA lock.
"""

from .connection import (
    CLASSIC_STRINGS,
    DEFAULT_PATH,
    STRING_VIEWS,
    WAREHOUSE_ERRORS,
    Connection,
    WarehouseBusy,
    WarehouseResource,
    registered,
    transaction,
)
from .schema import COMPACTED_TABLES, DDL, compact_roster

__all__ = [
    "CLASSIC_STRINGS",
    "COMPACTED_TABLES",
    "DDL",
    "DEFAULT_PATH",
    "STRING_VIEWS",
    "WAREHOUSE_ERRORS",
    "Connection",
    "WarehouseBusy",
    "WarehouseResource",
    "compact_roster",
    "registered",
    "transaction",
]
