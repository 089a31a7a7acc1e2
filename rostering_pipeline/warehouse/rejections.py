"""quality.rejections: every rejection of every upload, kept for the LEA and for operators."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import polars as pl

from .connection import Connection, registered, transaction

if TYPE_CHECKING:
    from ..uploads import Upload


def replace_rejections(
    conn: Connection, upload: Upload, rejections: pl.DataFrame, now: datetime
) -> None:
    """The upload's rejections, in place of any recorded before, in one transaction."""
    with transaction(conn):
        conn.execute("delete from quality.rejections where upload_id = ?", [upload.upload_id])
        with registered(conn, "new_rejections", rejections):
            conn.execute(
                'insert into quality.rejections (upload_id, lea_id, file, line, "column", rule,'
                ' value, fix, level, recorded_at) select ?, ?, file, line, "column", rule,'
                " value, fix, level, ? from new_rejections",
                [upload.upload_id, upload.lea_id, now],
            )
