"""Text an LEA controls (file and column names, values, and our sentences that quote them), put
into markdown that shows it and does nothing else: no HTML, link, emphasis or table cell of
its own, wherever it lands inline (a paragraph, a heading, a table cell)."""

from __future__ import annotations

import re

#: Everything inline markdown acts on: escapes, code, emphasis, strikethrough, links and
#: images, HTML and entities, table cells, heading closers, math. `_` only at a word's edge,
#: since `birth_date` cannot start emphasis and reads better unescaped.
_ACTIVE = re.compile(r"[\\`*~\[\]<>&|#$]|(?<![^\W_])_|_(?![^\W_])")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: GFM links bare web addresses, and GitHub and remark (the Dagster UI) do it a second time
#: after backslash escapes are undone, so no escape stops it: an empty HTML comment splits the
#: text instead. Renderers drop the comment; the text reads and copies unchanged.
_BARE_LINK = re.compile(r"(?i)(?<=www)(?=\.)|(?<=:)(?=//)")
LINK_BREAK = "<!-- -->"


def md_text(text: str | None) -> str:
    """`text` as literal inline markdown; a line break shows as ⏎ (it would end a table row
    or a heading)."""
    if not text:
        return ""
    escaped = _ACTIVE.sub(r"\\\g<0>", _LINE_BREAK.sub(" ⏎ ", text))
    return _BARE_LINK.sub(LINK_BREAK, escaped)
