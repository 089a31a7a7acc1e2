"""The LEA's outbox/: every file the pipeline leaves an LEA, and the rule they share: nothing
there is ever overwritten, because the LEA may have read it.

An upload's first report is `sync_report_<upload time>.md` with `rejections_<upload time>.csv`
(UPLOAD_SPEC). A later word on the same upload (an operator's decision on a held upload, a
replay, a notice that a run failed on our side) is a new pair, `…_2`, `…_3`, beside the
earlier ones: the history is added to, never rewritten.
"""

from __future__ import annotations

from itertools import count

import polars as pl

from .decision import UploadDecision
from .report import render_rejections_csv, render_report
from .sftp import SftpResource
from .uploads import Upload, outbox


def _free_names(sftp: SftpResource, upload: Upload) -> tuple[str, str]:
    """The next report and rejections CSV names of the upload that its outbox does not hold."""
    try:
        taken = {f.name for f in sftp.list_dir(outbox(upload.lea_id))}
    except FileNotFoundError:  # no outbox yet: the first report creates it
        taken = set()
    for n in count(1):
        suffix = "" if n == 1 else f"_{n}"
        names = (
            f"sync_report_{upload.upload_time}{suffix}.md",
            f"rejections_{upload.upload_time}{suffix}.csv",
        )
        if not taken & set(names):
            return names
    raise AssertionError("unreachable")


def deliver_report(
    sftp: SftpResource, upload: Upload, plan: UploadDecision, rejections: pl.DataFrame
) -> list[str]:
    """Write the report and its rejections CSV to the LEA's outbox; returns their paths."""
    with sftp.connected():
        report, csv = _free_names(sftp, upload)
        folder = outbox(upload.lea_id)
        text = render_report(upload, plan, rejections, rejections_file=csv)
        sftp.write_bytes(f"{folder}/{report}", text.encode("utf-8"))
        sftp.write_bytes(f"{folder}/{csv}", render_rejections_csv(rejections))
    return [f"{folder}/{report}", f"{folder}/{csv}"]


def deliver_failure_notice(sftp: SftpResource, upload: Upload, run_id: str) -> str:
    """Tell the LEA its upload arrived but a problem on our side stopped its run; returns
    the path. Only for an upload still waiting to be decided (the caller checks)."""
    with sftp.connected():
        report, _ = _free_names(sftp, upload)
        path = f"{outbox(upload.lea_id)}/{report}"
        sftp.write_bytes(path, failure_notice(upload, run_id).encode("utf-8"))
    return path


def failure_notice(upload: Upload, run_id: str) -> str:
    return (
        f"# Sync report for LEA {upload.lea_id}\n\n"
        f"- Upload: `{upload.upload_id}`, received {upload.received_at:%Y-%m-%d %H:%M:%S} UTC\n"
        "- Result: **Received, not yet applied: a problem on our side stopped processing**\n\n"
        "Your files arrived and are archived unchanged. Nothing in them caused this and you "
        "do not need to send them again: the operators have been notified and the upload "
        "will be processed once the problem is fixed. A new report will follow beside this "
        "one.\n\n"
        f"Reference for the operators: run `{run_id}`.\n"
    )
