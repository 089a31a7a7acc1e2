"""The house rules of docs/architecture.md, read from the code: who may import whom, and the
one owner of each record an LEA or an operator relies on."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rostering_pipeline"

#: The pipeline's stages, in order. A stage's module may import the shared modules and the
#: modules of its own or an earlier stage, never a later one.
STAGES = {
    "ingest": 1,
    "validated_frames": 2,
    "roster": 3,  # diff, plan, apply, checks, explain (a package)
}
#: What every stage may use, and which may use only each other: the upload contract
#: (upload_spec), configuration, the warehouse's SQL, the ledger, the decision types, the
#: report's rendering and the outbox.
SHARED = {
    "places",
    "settings",
    "lea_settings",
    "sftp",
    "quiet_inboxes",  # the sensor's memory of empty inboxes, which sftp's listing consults
    "uploads",
    "run_tags",
    "markdown_text",
    "notify",
    "upload_spec",
    "warehouse",
    "ledger",
    "decision",
    "quality",  # records rejections, from receiving (refusals) and validation alike
    "report",
    "outbox",
    "freshness",
    "instance_storage",
}
#: Wiring: Dagster definitions, entry points and operator tools, which may import anything.
WIRING = {
    "defs",
    "definitions",
    "cli",
    "runner",
    "summary",
    "rebuild",
    "status_board",
    "held",
    "contrib",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path) -> set[str]:
    """The package's modules `module` imports (relative imports resolved)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                names = [".".join([*base, node.module])] if node.module else []
                if not node.module:
                    names = [".".join([*base, a.name]) for a in node.names]
            elif (node.module or "").startswith("rostering_pipeline"):
                names = [node.module.removeprefix("rostering_pipeline").lstrip(".")]
                if not names[0]:
                    names = [a.name for a in node.names]
            else:
                continue
            out.update(n for n in names if n)
        elif isinstance(node, ast.Import):
            out.update(
                a.name.removeprefix("rostering_pipeline.")
                for a in node.names
                if a.name.startswith("rostering_pipeline.")
            )
    return out


def _room(module: str) -> str:
    return module.split(".")[0]


def test_every_module_has_a_room() -> None:
    rooms = {_room(m) for m in _modules() if m}
    assert rooms <= set(STAGES) | SHARED | WIRING, rooms - set(STAGES) - SHARED - WIRING


@pytest.mark.parametrize("module", sorted(m for m in _modules() if m))
def test_no_module_imports_a_later_stage(module: str) -> None:
    room = _room(module)
    if room in WIRING:
        return
    for imported in _imports(module, _modules()[module]):
        target = _room(imported)
        if target in WIRING:
            pytest.fail(f"{module} imports {imported}: only wiring may import wiring")
        if room in SHARED:
            assert target in SHARED, f"{module} (shared) imports {imported} (stage {target})"
        elif target in STAGES:
            assert STAGES[target] <= STAGES[room], (
                f"{module} (stage {room}) imports {imported}, a later stage ({target})"
            )


def _python_sources() -> dict[str, str]:
    return {m: p.read_text() for m, p in _modules().items()}


def test_only_the_warehouse_package_writes_ingest_uploads_and_only_the_ledger_calls_it() -> None:
    writes = re.compile(r"(insert into|update|delete from)\s+ingest\.(uploads|decisions)\b", re.I)
    writers = {m for m, text in _python_sources().items() if writes.search(text)}
    assert writers == {"warehouse.uploads"}, writers
    tree = ast.parse((PACKAGE / "warehouse" / "uploads.py").read_text())
    write_functions = {
        f.name
        for f in tree.body
        if isinstance(f, ast.FunctionDef)
        and writes.search(
            ast.get_source_segment((PACKAGE / "warehouse" / "uploads.py").read_text(), f) or ""
        )
    }
    assert write_functions  # the check below looks at something
    callers = {
        m
        for m, text in _python_sources().items()
        if m != "warehouse.uploads"
        and any(re.search(rf"\b{name}\(", text) for name in write_functions)
    }
    assert callers == {"ledger"}, callers


def test_only_the_outbox_writes_to_an_sftp_server() -> None:
    writers = {
        m
        for m, text in _python_sources().items()
        if m != "sftp" and re.search(r"\.(write_bytes|putfo|put)\(", text)
    }
    assert writers == {"outbox"}, writers
