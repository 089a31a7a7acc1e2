"""The sync report an LEA finds in outbox/: what was applied, what was refused, what to fix.

It is read by a registrar, not an engineer: it opens with the outcome in one line, counts
changes per kind of record, then lists each problem once with what to do about it and every
line it occurs on. The report and the rejections CSV go back to the LEA that sent the data,
so they quote the LEA's own values; Dagster metadata and logs get only counts, IDs and line
numbers.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import polars as pl

from .roster.plan import RosterDiff
from .sftp import SftpResource
from .upload_spec.files import BY_ENTITY, BY_FILE_NAME, ENTITIES
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
    "rejected": "Fix the problems marked **Stops the whole upload** below and upload all files "
    "again. Your roster stays as it was until then.",
    "held": "An operator will review this upload before it is applied. If the drops are a "
    "mistake (an incomplete export, say), upload corrected files; they replace this upload.",
    "duplicate": "Nothing to do.",
    "superseded": "Nothing to do: the newer upload is what your roster shows.",
}
LEVEL_WORDS = {
    "upload": "Stops the whole upload",
    "row": "Row not applied",
    "warning": "Note (applied anyway)",
}
LEVEL_INTRO = {
    "upload": "These stop the whole upload: nothing in it was applied.",
    "row": "Each row below was left out and the rest of the upload was applied. A row left "
    "out keeps what your roster already had for it (a rejected student is not dropped "
    "from their classes). Fix these in your SIS; the next upload picks the rows up.",
    "warning": "These did not stop anything; act on them only if the note asks you to.",
}
ONEROSTER_NOTE = (
    "This upload is a OneRoster 1.1 set, so problems are shown at OneRoster's file, line and "
    "column. The rules are the upload spec's, in its words: a *campus* is an org of type "
    "school (campus_id is its identifier), *students* and *staff* are users by role, "
    "birth_date and gender come from demographics.csv, and a class's teacher_id is its "
    "primary teacher in enrollments.csv."
)
REJECTION_CSV_COLUMNS = ["file", "line", "column", "rule", "value", "fix", "level"]
LEVEL_ORDER = {"upload": 0, "row": 1, "warning": 2}
FILE_ORDER = [
    *(spec.file_name for spec in BY_ENTITY.values()),
    "manifest.csv",
    "orgs.csv",
    "users.csv",
    "demographics.csv",
    "academicSessions.csv",
]
LISTED_PER_PROBLEM = 50


def report_name(upload: Upload) -> str:
    return f"sync_report_{upload.upload_time}.md"


def rejections_name(upload: Upload) -> str:
    return f"rejections_{upload.upload_time}.csv"


def render_report(upload: Upload, plan: RosterDiff, rejections: pl.DataFrame) -> str:
    """Markdown for the LEA's staff: the outcome, counts per kind of record, then each
    problem with its fix and where it occurs."""
    rejected = _rejected_rows(rejections)
    total = sum(rejected.values())
    headline = HEADLINES.get(plan.decision, plan.decision)
    if plan.decision in ("apply", "applied") and total:
        headline += f", except {total} rejected {_plural(total, 'row')} (see What needs fixing)"
    lines = [
        f"# Sync report for LEA {upload.lea_id}",
        "",
        f"**{headline}**",
        "",
        f"- Upload: `{upload.upload_id}`, received {upload.received_at:%Y-%m-%d %H:%M:%S} UTC",
        f"- Files: {', '.join(f'{f.name} ({f.size:,} bytes)' for f in upload.files) or 'none'}",
    ]
    if plan.reason:
        lines.append(f"- Why: {plan.reason}")
    if plan.decision in WHAT_NEXT:
        lines += ["", WHAT_NEXT[plan.decision]]
    lines += ["", "## Changes", ""]
    if plan.decision == "rejected":
        lines.append("None: nothing in this upload was applied.")
    else:
        lines += _change_table(plan, rejected)
    if plan.decision == "held":
        lines += ["", "The counts above are what this upload *would* change."]
    lines += ["", "## What needs fixing", ""]
    if rejections.is_empty():
        lines.append("Nothing: every row was accepted.")
    elif _is_oneroster(upload):
        lines += [ONEROSTER_NOTE, ""]
    introduced: set[str] = set()
    for (level, file, rule, fix), group in _grouped(rejections):
        if level not in introduced:
            introduced.add(level)
            lines += [LEVEL_INTRO.get(level, ""), ""]
        lines += [
            f"### {LEVEL_WORDS.get(level, level)}: {file}: {rule}",
            "",
            f"What to do: {fix}",
            "",
            *_places(group, upload),
            "",
        ]
    lines.append(
        f"Every problem is also listed, one row each, in `{rejections_name(upload)}` "
        "beside this report."
    )
    return "\n".join(lines).rstrip() + "\n"


def _change_table(plan: RosterDiff, rejected: dict[str, int]) -> list[str]:
    """Counts per kind of record. In additions-only mode a record missing from the upload is
    kept rather than dropped; a column says how many of each kind, so the registrar can tell
    "nothing was missing" from "missing records were kept"."""
    kept = {e: d.withheld_drops for e, d in plan.entities.items() if d.withheld_drops}
    kept_header = (" kept (additions-only) |", "---:|") if kept else ("", "")
    lines = [
        f"| records | added | updated | dropped |{kept_header[0]} rows rejected |",
        f"|---|---:|---:|---:|{kept_header[1]}---:|",
    ]
    counts = plan.counts()
    for entity in ENTITIES:
        c = counts.get(entity, {"add": 0, "update": 0, "drop": 0})
        kept_cell = f" {kept.get(entity, 0)} |" if kept else ""
        lines.append(
            f"| {entity} | {c['add']} | {c['update']} | {c['drop']} |{kept_cell}"
            f" {rejected.get(entity, 0)} |"
        )
    if kept:
        n = sum(kept.values())
        lines += [
            "",
            f"{n} {_plural(n, 'record')} missing from this upload {'was' if n == 1 else 'were'} "
            "kept, not dropped, because this LEA is in additions-only mode. Ask the "
            "operators to switch to complete mode once your exports are complete.",
        ]
    return lines


def _rejected_rows(rejections: pl.DataFrame) -> dict[str, int]:
    """Rows left out per kind of record: a row breaking two rules counts once."""
    entity = (
        pl.col("entity")
        if "entity" in rejections.columns
        else pl.col("file").replace_strict(
            {name: spec.entity for name, spec in BY_FILE_NAME.items()}, default=None
        )
    )
    rows = rejections.filter(pl.col("level") == "row")
    rows = rows.select(entity.alias("entity"), "file", "line")
    counts = rows.unique().group_by("entity").len()
    return {e: n for e, n in counts.rows() if e is not None}


def _grouped(rejections: pl.DataFrame) -> list[tuple[tuple[str, str, str, str], pl.DataFrame]]:
    keyed = [
        ((str(k[0]), str(k[1]), str(k[2]), str(k[3] or "")), g)
        for k, g in rejections.group_by(["level", "file", "rule", "fix"], maintain_order=True)
    ]

    def place(item: tuple[tuple[str, str, str, str], pl.DataFrame]) -> tuple:
        (level, file, _, _), group = item
        first = group["line"].min()
        return (
            LEVEL_ORDER.get(level, 9),
            FILE_ORDER.index(file) if file in FILE_ORDER else len(FILE_ORDER),
            file,
            first if isinstance(first, int) else 0,
        )

    return sorted(keyed, key=place)


def _places(group: pl.DataFrame, upload: Upload) -> list[str]:
    shown = group.sort("line", nulls_last=True).head(LISTED_PER_PROBLEM)
    if shown["line"].is_null().all() and shown["value"].is_null().all():
        return []
    out = ["| line | column | value |", "|---:|---|---|"]
    for row in shown.iter_rows(named=True):
        line = "" if row["line"] is None else str(row["line"])
        value = "" if row["value"] is None else f"`{_cell(row['value'])}`"
        out.append(f"| {line} | {_cell(row['column'] or '')} | {value} |")
    more = group.height - shown.height
    if more > 0:
        out += ["", f"… and {more} more: see `{rejections_name(upload)}`."]
    return out


def _cell(text: str) -> str:
    """A value safe inside a markdown table cell and code span."""
    return text.replace("`", "'").replace("|", "\\|").replace("\r", "").replace("\n", " ⏎ ")


def _plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"


def _is_oneroster(upload: Upload) -> bool:
    names = [PurePosixPath(f.name).name.lower() for f in upload.files]
    return any(n == "manifest.csv" or n.endswith(".zip") for n in names)


def render_rejections_csv(rejections: pl.DataFrame) -> bytes:
    return rejections.select(REJECTION_CSV_COLUMNS).write_csv().encode("utf-8")


def deliver_report(
    sftp: SftpResource, upload: Upload, plan: RosterDiff, rejections: pl.DataFrame
) -> list[str]:
    """Write the report and the rejections CSV to the LEA's outbox; returns their paths."""
    report_path = f"{outbox(upload.lea_id)}/{report_name(upload)}"
    csv_path = f"{outbox(upload.lea_id)}/{rejections_name(upload)}"
    with sftp.connected():
        sftp.write_bytes(report_path, render_report(upload, plan, rejections).encode("utf-8"))
        sftp.write_bytes(csv_path, render_rejections_csv(rejections))
    return [report_path, csv_path]
