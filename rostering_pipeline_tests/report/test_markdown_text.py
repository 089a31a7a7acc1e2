"""md_text: the LEA's text shown in markdown exactly as written, and never acted on."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from rostering_pipeline.markdown_text import LINK_BREAK, md_text

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "[click](http://evil.example)",
    "![x](http://evil.example/x.png)",
    "<http://evil.example>",
    "http://evil.example and www.evil.example",
    "| ## x.csv",
    "a | b | c",
    "`code` and ``more``",
    "*bold* **strong** _it_ __strong__ ~~gone~~",
    "&lt;b&gt; &amp; &#60;",
    "\\*not escaped\\*",
    "ends with a heading closer ##",
    "[ref]: http://evil.example",
    "$x^2$",
]

#: Tags the markdown around the text makes; anything else came from the text.
OURS = {"p", "h3", "table", "thead", "tbody", "tr", "th", "td"}


def _html(markdown: str) -> str:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def _as_html_text(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _tags(html: str) -> set[str]:
    return set(re.findall(r"<(\w+)", html.replace(LINK_BREAK, "")))


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_shown_as_written_in_a_paragraph_heading_and_table_cell(
    text: str,
) -> None:
    shown = md_text(text)
    markdown = f"Value: {shown}\n\n### Heading: {shown}\n\n| a | b |\n|---|---|\n| {shown} | x |\n"

    html = _html(markdown)

    assert _tags(html) <= OURS
    plain = html.replace(LINK_BREAK, "")
    assert f"<p>Value: {_as_html_text(text)}</p>" in plain
    assert f"<h3>Heading: {_as_html_text(text)}</h3>" in plain
    assert f"<td>{_as_html_text(text)}</td>\n<td>x</td>" in plain


def test_bare_web_addresses_are_split_where_no_escape_reaches() -> None:
    """GitHub and remark-gfm (the Dagster UI) link bare addresses after undoing escapes."""
    shown = md_text("see http://evil.example or WWW.evil.example")

    assert "://" not in shown and "www." not in shown.lower()


def test_line_breaks_show_as_a_sign_and_plain_text_stays_readable() -> None:
    assert md_text("a\r\nb\nc\rd") == "a ⏎ b ⏎ c ⏎ d"
    assert md_text("birth_date must be a date written YYYY-MM-DD, e.g. 2015-09-01.") == (
        "birth_date must be a date written YYYY-MM-DD, e.g. 2015-09-01."
    )
    assert md_text(None) == ""
