"""What an LEA is told when its upload arrived but could not be processed on our side."""

from __future__ import annotations

from .uploads import Upload


def failure_report(upload: Upload, run_id: str) -> str:
    return (
        f"# Sync report for LEA {upload.lea_id}\n\n"
        f"- Upload: `{upload.upload_id}`, received {upload.received_at:%Y-%m-%d %H:%M:%S} UTC\n"
        "- Result: **Received, not yet applied: a problem on our side stopped processing**\n\n"
        "Your files arrived and are archived unchanged. Nothing in them caused this and you "
        "do not need to send them again: the operators have been notified and the upload "
        "will be processed once the problem is fixed. A new report will replace this one.\n\n"
        f"Reference for the operators: run `{run_id}`.\n"
    )
