"""Secrets and personal data stay where they belong.

- The SFTP password comes only from the environment (a Dagster EnvVar, resolved in the run),
  and neither it nor a wrong one tried at login reaches a log line, an event of the run's
  event log, or any file the pipeline or the Dagster instance writes.
- The archive and the warehouse are readable by the pipeline's own user only.
- The whole demo flow (the sample LEAs through `sync_once`) leaves no student's first or
  last name or birth date in a log line, a Dagster event (messages, metadata, errors) or an
  exception message. They go only to the warehouse, the archive and the LEA's own outbox.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import shutil
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._serdes import serialize_value

from rostering_demo.embedded_sftp import EmbeddedSftpServer
from rostering_pipeline.runner import sync_once
from rostering_pipeline.settings import REPO, SettingError, sftp_from_env
from rostering_pipeline_tests.conftest import Pipeline, pipeline_env
from rostering_pipeline_tests.faults import execute, failure_messages, sensor_requests
from rostering_pipeline_tests.uploads import day_one

LEA = "101912"
SAMPLES = REPO / "data" / "sample_uploads"
PASSWORD = "Pw-7c1e9a-never-shown"
WRONG_PASSWORD = "Pw-wrong-3f0b2d-never-shown"


@pytest.fixture
def secret_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """The pipeline with a password nothing else contains, a persistent Dagster instance
    (so what it stores on disk can be read back) and a warehouse in a folder it creates."""
    sftp_root = tmp_path / "sftp"
    sftp_root.mkdir()
    with EmbeddedSftpServer(sftp_root, password=PASSWORD) as server:
        env = pipeline_env(
            tmp_path, server.host, server.port, server.username, server.host_key_line
        )
        env["ROSTERING_WAREHOUSE"] = str(tmp_path / "warehouse" / "warehouse.duckdb")
        env["ROSTERING_ARCHIVE"] = str(tmp_path / "data" / "archive")
        env["ROSTERING_SFTP_PASSWORD"] = PASSWORD
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        home = tmp_path / "dagster_home"
        home.mkdir()
        with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
            yield Pipeline(tmp_path, sftp_root, instance, env)


def _run_ids(instance: dg.DagsterInstance) -> list[str]:
    return [record.dagster_run.run_id for record in instance.get_run_records()]


def _event_log_text(instance: dg.DagsterInstance) -> str:
    """Every event of every run, serialized whole: messages, metadata, errors, run config."""
    parts = []
    for run_id in _run_ids(instance):
        run = instance.get_run_by_id(run_id)
        parts.append(serialize_value(run))
        parts.extend(serialize_value(event) for event in instance.all_logs(run_id))
    return "\n".join(parts)


def _files_containing(root: Path, secret: str) -> list[Path]:
    needle = secret.encode()
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_password_comes_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROSTERING_SFTP_PASSWORD", PASSWORD)

    sftp = sftp_from_env()

    # The resource holds the variable's name; Dagster resolves it inside the run.
    assert isinstance(sftp.password, dg.EnvVar)
    assert sftp.password == "ROSTERING_SFTP_PASSWORD"
    assert PASSWORD not in repr(sftp) and PASSWORD not in str(sftp._get_non_default_public_field_values())  # fmt: skip
    monkeypatch.delenv("ROSTERING_SFTP_PASSWORD")
    assert sftp_from_env().password is None


def test_private_key_inside_the_repository_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROSTERING_SFTP_KEY_FILE", str(REPO / "deploy" / "id_ed25519"))

    with pytest.raises(SettingError, match="ROSTERING_SFTP_KEY_FILE points inside the repository"):
        sftp_from_env()


def test_no_secret_in_the_repository() -> None:
    """Deployment files name variables, never values: nothing tracked sets a password."""
    tracked = [REPO / "workspace.yaml", REPO / "pyproject.toml", *REPO.glob("deploy/**/*")]
    # A value on the same line (`password:` then `env: VAR` on the next names a variable; a
    # Helm switch like `generatePostgresqlPasswordSecret: false` holds none).
    pattern = re.compile(
        r"(?i)(password|passphrase|secret)[ \t]*[:=][ \t]*(?!(true|false)\b)['\"]?[^\s'\"$]{4,}"
    )
    assert pattern.search("  postgresqlPassword: hunter2") and pattern.search("password=s3cret!")
    assert [p for p in tracked if p.is_file() and pattern.search(p.read_text())] == []


def test_password_is_never_logged_stored_or_shown(
    secret_pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    pipeline = secret_pipeline
    caplog.set_level(logging.DEBUG)
    pipeline.upload(LEA, day_one())
    # A login with a wrong password first: its error must not echo what was tried.
    [request] = sensor_requests(pipeline).run_requests
    monkeypatch.setenv("ROSTERING_SFTP_PASSWORD", WRONG_PASSWORD)
    failed = execute(pipeline, request)
    monkeypatch.setenv("ROSTERING_SFTP_PASSWORD", PASSWORD)
    # A wrong login is the operator's to fix; Dagster does not retry a failed step: the
    # operator re-executes the run once the password is right.
    applied = pipeline.reexecute(failed.run_id)

    assert not failed.success and applied.success
    assert "refused the login of user 'rostering'" in failure_messages(pipeline, failed.run_id)
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    captured = capfd.readouterr()
    logged = "\n".join(
        [r.getMessage() + (r.exc_text or "") for r in caplog.records] + [captured.out, captured.err]
    )
    events = _event_log_text(pipeline.instance)
    assert "refused the login" in events  # the scan reads the failure it looks through
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert secret not in logged
        assert secret not in events
        # Nothing on disk either: the instance's storage, the warehouse, archive, outbox.
        assert _files_containing(pipeline.root, secret) == []


def test_archive_and_warehouse_are_owner_only(secret_pipeline: Pipeline) -> None:
    pipeline = secret_pipeline
    pipeline.upload(LEA, day_one())

    assert [r.success for r in pipeline.sync()] == [True]

    archive = Path(pipeline.env["ROSTERING_ARCHIVE"])
    folders = [archive, *(p for p in archive.rglob("*") if p.is_dir())]
    files = [p for p in archive.rglob("*") if p.is_file() and p.parent.name != "manifests"]
    manifests = list(archive.glob("*/manifests/*"))
    assert len(files) == len(day_one()) and len(manifests) == 1
    assert {p.relative_to(pipeline.root): _mode(p) for p in folders} == {
        p.relative_to(pipeline.root): 0o700 for p in folders
    }
    assert {_mode(p) for p in files} == {0o400}  # the files as received, never changed
    assert {_mode(p) for p in manifests} == {0o600}  # appended to as decisions are made
    assert _mode(pipeline.warehouse) == 0o600
    assert _mode(pipeline.warehouse.parent) == 0o700


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# Personal data ------------------------------------------------------------------------------


def _sample_people() -> tuple[set[str], set[str]]:
    """The sample students' first, middle and last names, and their birth dates as written
    and as the pipeline reads them (ISO)."""
    names: set[str] = set()
    dates: set[str] = set()
    for path in SAMPLES.glob("*/inbox/students.csv"):
        for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))):
            names |= {row[c] for c in ("first_name", "middle_name", "last_name") if row.get(c)}
            written = row["birth_date"]
            dates.add(written)
            for form in ("%Y-%m-%d", "%m/%d/%Y"):
                try:
                    dates.add(datetime.strptime(written, form).date().isoformat())
                except ValueError:
                    pass
    return names, dates


def _personal_data_in(text: str, names: set[str], dates: set[str]) -> list[str]:
    """Names as whole words (case as written), dates anywhere."""
    found = [d for d in dates if d in text]
    found += [n for n in names if re.search(rf"(?<![\w']){re.escape(n)}(?![\w'])", text)]
    return sorted(found)


def test_demo_flow_leaves_no_names_or_birth_dates_in_logs_events_or_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    names, dates = _sample_people()
    assert len(names) > 100 and len(dates) > 200  # the scan looks for real values
    sftp_root = tmp_path / "sftp"
    shutil.copytree(SAMPLES, sftp_root, ignore=shutil.ignore_patterns("README.md"))
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    with EmbeddedSftpServer(sftp_root) as server:
        env = pipeline_env(
            tmp_path, server.host, server.port, server.username, server.host_key_line
        )
        env["ROSTERING_SFTP_PASSWORD"] = server.password or ""
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        from rostering_pipeline.definitions import defs

        with dg.DagsterInstance.ephemeral() as instance:
            try:
                runs = sync_once(defs(), instance, progress=logging.getLogger("demo").info)
            except Exception as error:  # the scan covers a crash's message too
                errors.append(f"{type(error).__name__}: {error}")
                raise
            events = _event_log_text(instance)
            step_errors = [
                serialize_value(e.dagster_event.event_specific_data.error)
                for run_id in _run_ids(instance)
                for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            ]

    # The flow really ran: applied, row rejections, a rejected upload (see data/sample_uploads).
    assert sorted((r.lea_id, r.success) for r in runs) == [
        ("015901", True),
        ("101912", True),
        ("227901", True),
    ]
    # Where they belong, the scan finds them: the roster in the warehouse.
    with duckdb.connect(env["ROSTERING_WAREHOUSE"], read_only=True) as conn:
        roster = conn.execute(
            "select string_agg(concat_ws(' ', first_name, last_name, birth_date), ' ')"
            " from roster.students"
        ).fetchone()[0]
    assert len(_personal_data_in(roster, names, dates)) > 200
    captured = capfd.readouterr()
    logged = "\n".join(
        [r.getMessage() + (r.exc_text or "") for r in caplog.records] + [captured.out, captured.err]
    )
    assert "LEA 227901" in logged and "materialization" in events.lower()
    assert _personal_data_in(logged, names, dates) == []
    assert _personal_data_in(events, names, dates) == []
    assert _personal_data_in("\n".join(step_errors + errors), names, dates) == []
