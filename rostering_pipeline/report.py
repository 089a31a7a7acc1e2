"""The sync report an LEA finds in outbox/: what was applied, what was refused, what to fix.

The report and the rejections CSV go back to the LEA that sent the data, so they quote the
LEA's own values; Dagster metadata and logs get only counts, IDs and line numbers.
"""

from __future__ import annotations

import polars as pl

from .roster.plan import RosterDiff
from .sftp import SftpResource
from .upload_spec.files import BY_ENTITY, ENTITIES
from .uploads import Upload, outbox

HEADLINES = {
    "apply": "Applied",
    "applied": "Applied",
    "rejected": "Rejected: nothing was applied",
    "held": "Held for review: nothing was applied yet",
    "duplicate": "No changes: this upload repeats the last one",
    "superseded": "Skipped: a newer upload is already applied",
}
WHAT_NEXT = {
    "rejected": "Fix the problems marked **stops the whole upload** below and upload all files "
    "again. Your roster stays as it was until then.",
    "held": "An operator will review this upload before it is applied. If the drops are a "
    "mistake (an incomplete export, say), upload corrected files; they replace this upload.",
    "duplicate": "Nothing to do.",
    "superseded": "Nothing to do: the newer upload is what your roster shows.",
}
REJECTION_CSV_COLUMNS = ["file", "line", "column", "rule", "value", "fix", "level"]


def report_name(upload: Upload) -> str:
    return f"sync_report_{upload.upload_time}.md"


def rejections_name(upload: Upload) -> str:
    return f"rejections_{upload.upload_time}.csv"


def render_report(upload: Upload, plan: RosterDiff, rejections: pl.DataFrame) -> str:
    """Markdown for the LEA's staff: counts per kind of record, then each problem and its fix."""
    rows = rejections.filter(pl.col("level") == "row")
    lines = [
        f"# Sync report for LEA {upload.lea_id}",
        "",
        f"- Upload: `{upload.upload_id}`, received {upload.received_at:%Y-%m-%d %H:%M:%S} UTC",
        f"- Files: {', '.join(f'{f.name} ({f.size:,} bytes)' for f in upload.files) or 'none'}",
        f"- Result: **{HEADLINES.get(plan.decision, plan.decision)}**",
    ]
    if plan.reason:
        lines.append(f"- Why: {plan.reason}")
    if plan.decision in WHAT_NEXT:
        lines += ["", WHAT_NEXT[plan.decision]]
    lines += [
        "",
        "## Changes",
        "",
        "| records | added | updated | dropped | rejected rows |",
        "|---|---:|---:|---:|---:|",
    ]
    counts = plan.counts()
    for entity in ENTITIES:
        c = counts.get(entity, {"add": 0, "update": 0, "drop": 0})
        rejected = rows.filter(pl.col("file") == BY_ENTITY[entity].file_name).height
        lines.append(f"| {entity} | {c['add']} | {c['update']} | {c['drop']} | {rejected} |")
    if plan.decision == "held":
        lines += ["", "The counts above are what this upload *would* change."]
    lines += ["", "## What needs fixing", ""]
    if rejections.is_empty():
        lines.append("Nothing: every row was accepted.")
    for (level, rule), group in _grouped(rejections):
        where = _places(group)
        lines += [
            f"### {_level_words(level)}: {rule}",
            "",
            f"{group['fix'][0]}",
            "",
            *where,
            "",
        ]
    lines += [
        "",
        f"Every rejected row is also listed in `{rejections_name(upload)}` beside this report.",
    ]
    return "\n".join(lines).rstrip() + "\n"


def _grouped(rejections: pl.DataFrame) -> list[tuple[tuple[str, str], pl.DataFrame]]:
    order = {"upload": 0, "row": 1, "warning": 2}
    groups = rejections.group_by(["level", "rule"], maintain_order=True)
    keyed = [((str(k[0]), str(k[1])), g) for k, g in groups]
    files = [spec.file_name for spec in BY_ENTITY.values()]

    def place(kg: tuple[tuple[str, str], pl.DataFrame]) -> tuple:
        (level, _), group = kg
        file = group["file"][0]
        line = group["line"].min()
        return (
            order.get(level, 9),
            files.index(file) if file in files else len(files),
            line if line is not None else 0,
        )

    return sorted(keyed, key=place)


def _places(group: pl.DataFrame, limit: int = 50) -> list[str]:
    out = []
    for row in group.head(limit).iter_rows(named=True):
        place = row["file"]
        if row["line"] is not None:
            place += f", line {row['line']}"
        if row["column"]:
            place += f", column `{row['column']}`"
        value = f": `{row['value']}`" if row["value"] is not None else ""
        out.append(f"- {place}{value}")
    if group.height > limit:
        out.append(f"- … and {group.height - limit} more (see the rejections CSV)")
    return out


def _level_words(level: str) -> str:
    return {
        "upload": "Stops the whole upload",
        "row": "Row rejected",
        "warning": "Warning (applied anyway)",
    }.get(level, level)


def render_rejections_csv(rejections: pl.DataFrame) -> bytes:
    return rejections.select(REJECTION_CSV_COLUMNS).write_csv().encode("utf-8")


def deliver_report(
    sftp: SftpResource, upload: Upload, plan: RosterDiff, rejections: pl.DataFrame
) -> list[str]:
    """Write the report and the rejections CSV to the LEA's outbox; returns their paths."""
    report_path = f"{outbox(upload.lea_id)}/{report_name(upload)}"
    csv_path = f"{outbox(upload.lea_id)}/{rejections_name(upload)}"
    sftp.write_bytes(report_path, render_report(upload, plan, rejections).encode("utf-8"))
    sftp.write_bytes(csv_path, render_rejections_csv(rejections))
    return [report_path, csv_path]
