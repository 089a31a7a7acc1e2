"""A symbolic link in place of one of an LEA's folders (the LEA folder itself, inbox/,
processed/, processed/<upload_id>/, outbox/) is never followed, on the real loopback SFTP
server with real links: `/A/inbox -> ../B/inbox` would have A's run read B's files and move
them into A's processed/, `/A/processed -> ../B/inbox` would move A's files into B's inbox,
and a linked outbox/ would put A's report elsewhere. The run refuses with the LEA, the path
and the fix; nothing is read, moved or written through the link; other LEAs sync as usual;
once an operator puts a real folder in its place and re-executes the failed run, the LEA's
upload syncs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rostering_pipeline.sftp import NotARealFolder, SftpResource
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.faults import assert_archive_whole, failure_messages
from rostering_pipeline_tests.faulty_sftp import FaultySftpServer
from rostering_pipeline_tests.uploads import day_one

A = "101912"
B = "227901"
FIX = "An operator must replace the link with a real folder"


def _files_of(lea_id: str) -> dict[str, str | bytes]:
    """Day one as `lea_id` sends it: its own campuses and its own staff logins."""
    return {
        name: text.replace(A, lea_id).replace("example.org", f"lea{lea_id}.example.org")
        for name, text in day_one().items()
    }


def _link(link: Path, target: Path) -> None:
    """Replace `link` (a folder of the server) with a relative symbolic link to `target`, as
    someone with a shell on the SFTP server (or a server that lets clients make links) could."""
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _nothing_of_a_was_received(pipeline: Pipeline) -> None:
    assert pipeline.query("select count(*) from ingest.uploads where lea_id = ?", [A]) == [(0,)]
    assert pipeline.query("select count(*) from roster.students where lea_id = ?", [A]) == [(0,)]
    archive = Path(pipeline.env["ROSTERING_ARCHIVE"])
    assert_archive_whole(archive)
    assert not (archive / A).exists()


def _b_synced_as_usual(pipeline: Pipeline) -> None:
    root = pipeline.sftp_root
    assert pipeline.query("select status from ingest.uploads where lea_id = ?", [B]) == [
        ("applied",)
    ]
    assert pipeline.query(
        "select student_id from roster.students where lea_id = ? order by 1", [B]
    ) == [("S1",), ("S2",), ("S3",)]
    [upload] = [p.name for p in (root / B / "processed").iterdir()]
    assert _tree(root / B / "processed" / upload) == sorted([*_files_of(B), "ready"])
    assert [n for n in os.listdir(root / B / "outbox") if n.startswith("sync_report_")]


@pytest.mark.parametrize("folder", ["inbox", "processed", "outbox"])
def test_a_linked_folder_is_refused_and_nothing_goes_through_it(
    pipeline: Pipeline, folder: str
) -> None:
    root = pipeline.sftp_root
    pipeline.upload(B, _files_of(B))
    if folder == "inbox":  # A's inbox shows B's upload
        _link(root / A / "inbox", root / B / "inbox")
    else:  # A's own upload, and the folder it would be moved to or reported in is B's
        pipeline.upload(A, _files_of(A))
        _link(root / A / folder, root / B / ("inbox" if folder == "processed" else "outbox"))
    b_inbox = _tree(root / B / "inbox")

    runs = {r.lea_id: r for r in pipeline.sync()}

    assert runs[B].success and not runs[A].success
    failed = runs[A]
    message = failure_messages(pipeline, failed.run_id)
    assert f"LEA {A}: /{A}/{folder} is a symbolic link" in message
    assert f"{FIX}" in message and f"/{A}/{folder}" in message
    _nothing_of_a_was_received(pipeline)
    _b_synced_as_usual(pipeline)
    assert not [
        n for n in os.listdir(root / B / "outbox") if A in n or "failed" in n
    ]  # nothing of A was reported into B's outbox
    if folder != "inbox":
        assert pipeline.inbox(A) == sorted([*_files_of(A), "ready"])  # A's upload waits
    else:
        assert b_inbox == sorted([*_files_of(B), "ready"])  # A's run moved none of B's files

    # An operator replaces the link with a real folder, then re-executes A's failed run
    # (a linked inbox listed nothing of A's: A's next upload syncs).
    assert not pipeline.will_retry(failed.run_id)  # retrying before the fix would not help
    (root / A / folder).unlink()
    (root / A / folder).mkdir()
    if folder == "inbox":
        pipeline.upload(A, _files_of(A))
        runs = {r.lea_id: r for r in pipeline.sync()}
    else:
        runs = {A: pipeline.reexecute(failed.run_id)}

    assert runs[A].success
    assert pipeline.query("select status from ingest.uploads where lea_id = ?", [A]) == [
        ("applied",)
    ]
    assert pipeline.inbox(A) == []
    assert [n for n in os.listdir(root / A / "outbox") if n.startswith("sync_report_")]
    assert _tree(root / B / "inbox") == []  # nothing of A arrived in B's folders


def test_a_linked_lea_folder_is_refused(pipeline: Pipeline) -> None:
    root = pipeline.sftp_root
    pipeline.upload(B, _files_of(B))
    _link(root / A, root / B)

    runs = {r.lea_id: r for r in pipeline.sync()}

    assert runs[B].success and not runs[A].success
    message = failure_messages(pipeline, runs[A].run_id)
    assert f"LEA {A}: /{A} is a symbolic link" in message and FIX in message
    _nothing_of_a_was_received(pipeline)
    _b_synced_as_usual(pipeline)


def test_a_folder_linked_while_the_run_downloads_is_refused_before_use(
    pipeline: Pipeline, sftp_server: FaultySftpServer
) -> None:
    """The link appears after the run's first look (the LEA swaps its outbox/ and
    processed/ for links while the upload downloads): the move and the report refuse it."""
    root = pipeline.sftp_root
    pipeline.upload(A, _files_of(A))

    def swap_folders_for_links(path: str) -> None:
        if path == f"/{A}/inbox/students.csv" and not (root / A / "outbox").is_symlink():
            _link(root / A / "processed", root / B / "inbox")
            _link(root / A / "outbox", root / B / "outbox")

    sftp_server.after_open = swap_folders_for_links

    [run] = pipeline.sync()

    assert not run.success
    message = failure_messages(pipeline, run.run_id)
    assert f"LEA {A}: /{A}/processed is a symbolic link" in message and FIX in message
    assert _tree(root / B) == ["inbox", "outbox"]  # nothing moved or written through them
    assert pipeline.inbox(A) == sorted([*_files_of(A), "ready"])
    # Received (archived and recorded) but not applied; re-executed once the folder is real
    # (retrying before that would fail again: Dagster does not).
    assert pipeline.query("select status from ingest.uploads") == [("received",)]
    assert not pipeline.will_retry(run.run_id)

    sftp_server.after_open = None
    for folder in ("processed", "outbox"):
        (root / A / folder).unlink()
        (root / A / folder).mkdir()
    retried = pipeline.reexecute(run.run_id)

    assert retried.success
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert pipeline.inbox(A) == []
    assert [n for n in os.listdir(root / A / "outbox") if n.startswith("sync_report_")]
    assert _tree(root / B) == ["inbox", "outbox"]


def _resource(pipeline: Pipeline) -> SftpResource:
    return SftpResource(
        host=pipeline.env["ROSTERING_SFTP_HOST"],
        port=int(pipeline.env["ROSTERING_SFTP_PORT"]),
        username=pipeline.env["ROSTERING_SFTP_USER"],
        password=pipeline.env["ROSTERING_SFTP_PASSWORD"],
        known_hosts_path=pipeline.env["ROSTERING_SFTP_KNOWN_HOSTS"],
    )


def test_every_operation_refuses_a_link_anywhere_on_its_path(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    root = pipeline.sftp_root
    pipeline.upload(B, _files_of(B))
    sftp = _resource(pipeline)
    _link(root / A / "inbox", root / B / "inbox")
    _link(root / A / "processed" / "upload-1", root / B / "inbox")
    _link(root / A / "outbox", root / B / "outbox")
    local = tmp_path / "copy"

    refused = {
        "list": lambda: sftp.list_dir(f"/{A}/inbox"),
        "download": lambda: sftp.download(f"/{A}/inbox/students.csv", local),
        "move": lambda: sftp.move_files(["ready"], f"/{A}/inbox", f"/{A}/processed/x"),
        "move into": lambda: sftp.move_files(["x"], f"/{B}/inbox", f"/{A}/processed/upload-1"),
        "write": lambda: sftp.write_bytes(f"/{A}/outbox/sync_report.md", b"report"),
        "write below": lambda: sftp.write_bytes(f"/{A}/outbox/sub/sync_report.md", b"report"),
        "check": lambda: sftp.check_folders([f"/{A}/outbox"]),
    }
    for what, action in refused.items():
        with pytest.raises(NotARealFolder, match=f"is a symbolic link.*{FIX}") as raised:
            action()
        assert raised.value.path.startswith(f"/{A}/"), what

    assert not local.exists() or local.read_bytes() == b""
    assert _tree(root / B) == sorted(
        ["inbox", "outbox", *(f"inbox/{n}" for n in [*_files_of(B), "ready"])]
    )
    listing = sftp.list_inboxes()
    assert set(listing.inboxes) == {B}
    assert listing.refused[A].path == f"/{A}/inbox"
    assert f"/{A}/inbox is a symbolic link" in str(listing.refused[A])
