"""Clone reports in four formats: a terminal table, JSON, SARIF 2.1.0 (GitHub code scanning) and Markdown.

Each is a pure function of a CloneReport that returns the text to write; the JSON and SARIF shapes
are contracts (tests parse them back).
"""

from __future__ import annotations

import io
import json
import re
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from codesearch import __version__

if TYPE_CHECKING:  # annotations only: the CLI imports terminal_safe from here without loading clones (numpy)
    from codesearch.clones import CloneGroup, CloneReport

FORMATS = ("table", "json", "sarif", "markdown")
RULE_ID = "codesearch/duplicate-code"
KIND_TEXT = {"exact": "exact copy", "renamed": "renamed copy", "edited": "edited copy", "similar": "similar code"}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

# What a terminal would act on rather than show: C0 and C1 controls and DEL (ESC starts colour,
# title, clipboard (OSC 52) and clear-screen sequences; CR overwrites a line), the bidirectional
# overrides and isolates that reorder what is shown (Trojan Source), and the lone surrogates that
# stand for a file name's bytes that are not UTF-8 (they cannot be encoded for output at all).
_UNSAFE_BEYOND_C0 = r"\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE_LINE = re.compile(rf"[\x00-\x1f{_UNSAFE_BEYOND_C0}]")
_UNSAFE_CODE = re.compile(rf"[\x00-\x08\x0b-\x1f{_UNSAFE_BEYOND_C0}]")  # keeps \t and \n


def _escape_char(match: re.Match) -> str:
    """One unsafe character as Python writes it in a string literal; a surrogate that stands for a
    byte of a non-UTF-8 name shows that byte (`\\xff`), as the walker's skip list does."""
    point = ord(match.group())
    if 0xDC80 <= point <= 0xDCFF:
        point -= 0xDC00
    return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}"


def terminal_safe(text: str, *, code: bool = False) -> str:
    """`text` from a repository (a path, a name, code) made safe to print as text: every control
    character is shown escaped (ESC as `\\x1b`) instead of reaching the terminal; `code` keeps the
    newlines and tabs that lay code out. JSON output never goes through this: it stays exact."""
    return (_UNSAFE_CODE if code else _UNSAFE_LINE).sub(_escape_char, text)


def render(report: CloneReport, fmt: str, *, color: bool = False, width: int = 120) -> str:
    return {"table": render_table, "json": render_json, "sarif": render_sarif, "markdown": render_markdown}[fmt](
        report, color=color, width=width
    )


def _summary(report: CloneReport) -> str:
    count = len(report.groups)
    parts = [f"{count} clone group{'' if count == 1 else 's'} among {report.functions} functions"]
    if report.options.changed_since:
        parts.append(f"{report.unchanged} left out as unchanged since {report.options.changed_since}")
    if report.options.baseline:
        parts.append(f"{report.baselined} known in the baseline")
    o = report.options
    return ", ".join(parts) + f" (min similarity {o.min_similarity}, min overlap {o.min_overlap}, {report.seconds:.1f}s)"


def render_table(report: CloneReport, *, color: bool = False, width: int = 120) -> str:
    """One row per member, `path:start-end` first; groups separated by a line. Paths and names are
    plain text (a file named `[red]x.py` is not Rich markup) with control characters escaped."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in ("group", "location", "function", "lines", "similarity", "type"):
        table.add_column(column, no_wrap=column in ("location", "function"))
    for number, group in enumerate(report.groups, start=1):
        for i, member in enumerate(group.members):
            first = i == 0
            table.add_row(
                str(number) if first else "",
                Text(terminal_safe(f"{member.path}:{member.start_line}-{member.end_line}")),
                Text(terminal_safe(member.name)),
                str(member.end_line - member.start_line + 1),
                f"{group.similarity:.3f}" if first else "",
                KIND_TEXT[group.kind] if first else "",
                end_section=i == len(group.members) - 1,
            )
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, no_color=not color, width=width, highlight=False,
                      markup=False, emoji=False)
    if report.groups:
        console.print(table)
    console.print(_summary(report), markup=False)
    return buffer.getvalue()


def group_object(group: CloneGroup) -> dict:
    return {
        "fingerprint": group.fingerprint,
        "type": group.kind,
        "similarity": group.similarity,
        "members": [
            {"path": m.path, "start_line": m.start_line, "end_line": m.end_line, "name": m.name, "kind": m.kind,
             "language": m.language, "content_hash": m.content_hash}
            for m in group.members
        ],
    }


def render_json(report: CloneReport, **_) -> str:
    """One object: the settings, the groups, and a summary."""
    o = report.options
    data = {
        "version": 1,
        "tool": f"codesearch {__version__}",
        "options": {
            "min_similarity": o.min_similarity, "min_overlap": o.min_overlap, "min_lines": o.min_lines,
            "languages": list(o.languages),
            "under": o.under or ".", "paths": list(o.paths), "excludes": list(o.excludes),
            "cross_language": o.cross_language,
            "changed_since": o.changed_since, "baseline": str(o.baseline) if o.baseline else None,
        },
        "groups": [group_object(g) for g in report.groups],
        "summary": {
            "groups": len(report.groups), "functions": report.functions, "unchanged": report.unchanged,
            "baselined": report.baselined, "elapsed_ms": round(report.seconds * 1000, 1),
        },
    }
    return json.dumps(data, indent=2) + "\n"


def _location(member, *, index: int | None = None, message: str | None = None) -> dict:
    location = {
        "physicalLocation": {
            "artifactLocation": {"uri": member.path, "uriBaseId": "%SRCROOT%"},
            "region": {"startLine": member.start_line, "endLine": member.end_line},
        }
    }
    if index is not None:
        location["id"] = index
    if message:
        location["message"] = {"text": message}
    return location


def render_sarif(report: CloneReport, **_) -> str:
    """SARIF 2.1.0 for GitHub code scanning: one result per group at its first member, the others as
    relatedLocations (linked from the message as [name](id)), fingerprinted by the members' content."""
    rule = {
        "id": RULE_ID,
        "name": "DuplicateCode",
        "shortDescription": {"text": "Duplicated function"},
        "fullDescription": {"text": "This function is a copy, renamed copy, edited copy or close rewrite of other functions; "
                                    "consider sharing one implementation."},
        "defaultConfiguration": {"level": "warning"},
        "help": {"text": "Found by `codesearch clones`: token hashing finds exact and renamed copies, "
                         "token overlap finds edited copies, embedding similarity finds edited and rewritten ones."},
        "properties": {"tags": ["maintainability", "duplicate-code"], "precision": "medium"},
    }
    results = []
    for group in report.groups:
        first, others = group.members[0], group.members[1:]
        links = ", ".join(f"[{m.name}]({i})" for i, m in enumerate(others, start=1))
        results.append({
            "ruleId": RULE_ID,
            "ruleIndex": 0,
            "level": "warning",
            "message": {"text": f"{first.name} has {len(others)} {KIND_TEXT[group.kind]} clone"
                                f"{'s' if len(others) > 1 else ''} (similarity {group.similarity:.2f}): {links}"},
            "locations": [_location(first)],
            "relatedLocations": [_location(m, index=i, message=f"{m.name} ({m.path}:{m.start_line})")
                                 for i, m in enumerate(others, start=1)],
            "partialFingerprints": {"cloneGroup/v1": group.fingerprint},
            "properties": {"cloneType": group.kind, "similarity": group.similarity, "members": len(group.members)},
        })
    sarif = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "codesearch", "version": __version__, "semanticVersion": __version__,
                                "rules": [rule]}},
            "originalUriBaseIds": {"%SRCROOT%": {"description": {"text": "The repository root."}}},
            "columnKind": "utf16CodeUnits",
            "results": results,
        }],
    }
    return json.dumps(sarif, indent=2) + "\n"


def render_markdown(report: CloneReport, **_) -> str:
    """A PR comment: a heading with the count, then one table per group."""
    lines = [f"### codesearch clones: {len(report.groups)} clone group{'s' if len(report.groups) != 1 else ''}", ""]
    for number, group in enumerate(report.groups, start=1):
        lines += [f"**{number}. {KIND_TEXT[group.kind]}**, similarity {group.similarity:.2f}", "",
                  "| location | function | lines |", "| --- | --- | --- |"]
        for m in group.members:
            location = _code_span(f"{m.path}:{m.start_line}")
            lines.append(f"| {location} | {_code_span(m.name)} | {m.end_line - m.start_line + 1} |")
        lines.append("")
    lines.append(f"<sub>{_summary(report)}</sub>")
    return "\n".join(lines) + "\n"


def _code_span(text: str) -> str:
    """`text` as a Markdown code span inside a table cell: control characters escaped, `|` escaped
    (it would end the cell), and fenced with more backticks than any run inside it."""
    text = terminal_safe(text).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
