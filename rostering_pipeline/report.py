"""The sync report an LEA finds in outbox/: what was applied, what was refused, what to fix.

It is read by a registrar, not an engineer: it opens with the outcome in one line, counts
changes per kind of record, then lists each problem once with what to do about it and every
line it occurs on. The report and the rejections CSV go back to the LEA that sent the data,
so they quote the LEA's own values; Dagster metadata and logs get only counts, IDs and line
numbers. Whatever the LEA wrote is shown as text and never acted on: escaped in the report
(`md_text`), neutralised where a spreadsheet would run it as a formula in the CSV.
"""

from __future__ import annotations

import json

import polars as pl

from .decision import WHY, UploadDecision
from .markdown_text import md_text
from .upload_spec.files import BY_FILE_NAME, ENTITIES
from .upload_spec.formats import format_named
from .uploads import Upload

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
    # Rejected with nothing that stops it: an operator rejected it (say, after a hold).
    "rejected_by_operator": "Your roster stays as it was. Upload all files again once they "
    "are complete and correct.",
    "duplicate": "Nothing to do.",
    "superseded": "Nothing to do: the newer upload is what your roster shows.",
}
LEVEL_WORDS = {
    "upload": "Stops the whole upload",
    "row": "Row not applied",
    "warning": "Note (applied anyway)",
    "note": "For information",
}
LEVEL_INTRO = {
    "upload": "These stop the whole upload: nothing in it was applied.",
    "warning": "These did not stop anything; act on them only if the note asks you to.",
    "note": "How the upload was read; nothing to fix.",
}
_KEPT = (
    "A row left out keeps what your roster already had for it (a rejected student is not "
    "dropped from their classes). Fix these in your SIS; the next upload picks the rows up."
)
#: What rejected rows mean depends on what happened to the rest of the upload (the decision;
#: `blackout` for an upload held by a blackout).
ROW_INTRO = {
    "apply": f"Each row below was left out and the rest of the upload was applied. {_KEPT}",
    "held": "Nothing in this upload is applied until an operator decides on it; if it is "
    f"applied, each row below is left out. {_KEPT}",
    "blackout": "Nothing in this upload is applied before the sync blackout ends; if it is "
    f"applied then, each row below is left out. {_KEPT}",
    "rejected": "Nothing in this upload was applied, these rows included. Fix them in your SIS "
    "before you upload again.",
    "duplicate": "This upload repeats the last one, which left out each row below: nothing "
    f"changed. {_KEPT}",
    "superseded": "Nothing in this upload was applied, these rows included: a newer upload "
    "was, and its report lists what it left out.",
}
ROW_INTRO["applied"] = ROW_INTRO["apply"]
REJECTION_CSV_COLUMNS = ["file", "line", "column", "rule", "value", "fix", "level"]
#: A cell a spreadsheet reads as a formula (OWASP, CSV injection): one starting with = + - @,
#: a tab, a carriage return or NUL; also after leading spaces or line breaks, which some skip.
FORMULA_START = r"^[\t\r\x00]|^\s*[=+\-@]"
LEVEL_ORDER = {"upload": 0, "row": 1, "warning": 2, "note": 3}
KEPT_NAMED = "named by a kept row"
LISTED_PER_PROBLEM = 50


def report_name(upload: Upload) -> str:
    return f"sync_report_{upload.upload_time}.md"


def rejections_name(upload: Upload) -> str:
    return f"rejections_{upload.upload_time}.csv"


def render_report(
    upload: Upload,
    plan: UploadDecision,
    rejections: pl.DataFrame,
    *,
    rejections_file: str | None = None,
) -> str:
    """Markdown for the LEA's staff: the outcome, counts per kind of record, then each
    problem with its fix and where it occurs."""
    csv_name = rejections_file or rejections_name(upload)
    rejected = _rejected_rows(rejections)
    total = sum(rejected.values())
    headline = HEADLINES.get(plan.decision, plan.decision)
    if plan.decision in ("apply", "applied") and total:
        headline += f", except {total} rejected {_plural(total, 'row')} (see What needs fixing)"
    files = ", ".join(f"{md_text(f.name)} ({f.size:,} bytes)" for f in upload.files)
    lines = [
        f"# Sync report for LEA {upload.lea_id}",
        "",
        f"**{headline}**",
        "",
        f"- Upload: `{upload.upload_id}`, received {upload.received_at:%Y-%m-%d %H:%M:%S} UTC",
        f"- Files: {files or 'none'}",
    ]
    if plan.reason:
        lines.append(f"- Why: {md_text(plan.reason)}")
    stopped = not rejections.filter(pl.col("level") == "upload").is_empty()
    decision = (
        "rejected_by_operator" if plan.decision == "rejected" and not stopped else plan.decision
    )
    if decision in WHAT_NEXT:
        lines += ["", WHAT_NEXT[decision]]
    lines += ["", "## Changes", ""]
    if plan.decision == "rejected":
        lines.append("None: nothing in this upload was applied.")
    else:
        lines += _change_table(plan, rejected)
        lines += _kept_for_rejected_rows(plan)
        lines += _changes_to_check(plan)
    if plan.decision == "held":
        lines += ["", "The counts above are what this upload *would* change."]
    lines += ["", "## What needs fixing", ""]
    upload_format = format_named(f.name for f in upload.files)
    if rejections.filter(pl.col("level") != "note").is_empty():
        lines.append("Nothing: every row was accepted.")
    elif upload_format.report_note:
        lines += [upload_format.report_note, ""]
    introduced: set[str] = set()
    for (level, file, rule, fix), group in _grouped(rejections, upload_format.file_names):
        if level not in introduced:
            introduced.add(level)
            lines += [_intro(level, plan), ""]
        lines += [
            f"### {LEVEL_WORDS.get(level, level)}: {md_text(file)}: {md_text(rule)}",
            "",
            f"What to do: {md_text(fix)}",
            "",
            *_places(group, csv_name),
            "",
        ]
    lines.append(f"Every problem is also listed, one row each, in `{csv_name}` beside this report.")
    return "\n".join(lines).rstrip() + "\n"


def _intro(level: str, plan: UploadDecision) -> str:
    if level != "row":
        return LEVEL_INTRO.get(level, "")
    held_by_blackout = plan.decision == "held" and plan.held_by == "blackout"
    return ROW_INTRO.get("blackout" if held_by_blackout else plan.decision, ROW_INTRO["apply"])


def _change_table(plan: UploadDecision, rejected: dict[str, int]) -> list[str]:
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


def _changes_to_check(plan: UploadDecision) -> list[str]:
    """Applied, but worth a look: an ID that now describes another person, a login that
    passed from one staff member to another. IDs only."""
    notes = []
    students = plan.entities.get("students")
    if students is not None:
        updates = students.changes.filter(pl.col("change") == "update")
        for key, old in updates.select("key", "old_values").rows():
            if {"first_name", "last_name", "birth_date"} <= set(json.loads(old or "{}")):
                notes.append(
                    f"student_id {md_text(key)}: first name, last name and birth date all "
                    "changed. If the ID was given to another student, the roster now shows the "
                    "new student under the old student's history: check the ID in your SIS."
                )
    staff = plan.entities.get("staff")
    if staff is not None:
        had, has = {}, {}
        for key, change, old, new in staff.changes.select(
            "key", "change", "old_values", "new_values"
        ).rows():
            if change in ("update", "drop") and (email := json.loads(old or "{}").get("email")):
                had[email.lower()] = key
            if change in ("update", "add") and (email := json.loads(new or "{}").get("email")):
                has[email.lower()] = key
        for email, new_key in sorted(has.items()):
            if email in had and had[email] != new_key:
                notes.append(
                    f"staff_id {md_text(new_key)} now has the email (and login) staff_id "
                    f"{md_text(had[email])} "
                    "had: the account's sign-in passed between two staff members. Check both "
                    "rows if this was not intended."
                )
    if not notes:
        return []
    return ["", "Applied, but please check:", "", *(f"- {n}" for n in notes)]


def _kept_for_rejected_rows(plan: UploadDecision) -> list[str]:
    """Records the upload leaves out but a rejected row still needs: kept, and said so."""
    named = {
        entity: d.kept.filter(pl.col(WHY) == KEPT_NAMED)
        for entity, d in plan.entities.items()
        if d.kept is not None and WHY in d.kept.columns
    }
    named = {e: k for e, k in named.items() if not k.is_empty()}
    if not named:
        return []
    shown = {e: keys.drop(WHY).head(LISTED_PER_PROBLEM).rows() for e, keys in named.items()}
    listed = "; ".join(
        f"{entity} {', '.join(md_text('|'.join(key)) for key in keys)}"
        for entity, keys in shown.items()
    )
    return [
        "",
        f"Kept, not dropped: {listed}. These are missing from this upload, but a row that was "
        "rejected still names them (the teacher of a class whose row was rejected, say), so "
        "they stay as your roster had them until that row is fixed.",
    ]


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


def _grouped(
    rejections: pl.DataFrame, file_order: tuple[str, ...]
) -> list[tuple[tuple[str, str, str, str], pl.DataFrame]]:
    keyed = [
        ((str(k[0]), str(k[1]), str(k[2]), str(k[3] or "")), g)
        for k, g in rejections.group_by(["level", "file", "rule", "fix"], maintain_order=True)
    ]

    def place(item: tuple[tuple[str, str, str, str], pl.DataFrame]) -> tuple:
        (level, file, _, _), group = item
        first = group["line"].min()
        return (
            LEVEL_ORDER.get(level, 9),
            file_order.index(file) if file in file_order else len(file_order),
            file,
            first if isinstance(first, int) else 0,
        )

    return sorted(keyed, key=place)


def _places(group: pl.DataFrame, csv_name: str) -> list[str]:
    shown = group.sort("line", nulls_last=True).head(LISTED_PER_PROBLEM)
    if shown["line"].is_null().all() and shown["value"].is_null().all():
        return []
    out = ["| line | column | value |", "|---:|---|---|"]
    for row in shown.iter_rows(named=True):
        line = "" if row["line"] is None else str(row["line"])
        out.append(f"| {line} | {md_text(row['column'])} | {md_text(row['value'])} |")
    more = group.height - shown.height
    if more > 0:
        out += ["", f"… and {more} more: see `{csv_name}`."]
    return out


def _plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"


def render_rejections_csv(rejections: pl.DataFrame) -> bytes:
    """One row per rejection, for a registrar's spreadsheet. Any text cell can carry the LEA's
    own text (a file name, a header, a value, a rule or fix quoting one), so a cell that would
    run as a formula gets a leading `'`, which Excel reads as "this is text", and every text
    cell is quoted. quality.rejections keeps the values as they were sent."""
    texts = [c for c in REJECTION_CSV_COLUMNS if rejections.schema[c] == pl.String]
    shown = rejections.select(REJECTION_CSV_COLUMNS).with_columns(
        pl.when(pl.col(c).str.contains(FORMULA_START))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c in texts
    )
    return shown.write_csv(quote_style="non_numeric").encode("utf-8")
