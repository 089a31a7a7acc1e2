"""The warehouse: the tables of record (ingest, quality, roster) and the one way to reach them.

Every SQL statement against the warehouse file lives in this package, so a second backend
implements these modules and nothing else: `connection` (opening the file, the lock policy),
`schema` (DDL and upkeep). The rest of the pipeline calls their functions with the
connection `WarehouseResource.connect` yields.
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
