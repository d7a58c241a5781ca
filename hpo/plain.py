"""Text laid out as Rich lays it out, without importing Rich or Typer: hpo's tables and its
top-level help page.

Importing Rich and Typer takes longer than a read command should (``hpo status`` answers in
well under 0.3 s without them). Each function here returns None wherever its layout could
differ from Rich's: the text needs wrapping or holds wide or control characters, or the
environment changes Rich's choices (FORCE_COLOR, NO_COLOR, ...); the caller then uses Rich.
tests/test_plain.py holds the output to Rich's and Typer's, byte for byte.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

# Environment variables that change how Rich or Typer write: where one is set, Rich decides.
_RICH_SWITCHES = ("FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "NO_COLOR", "TTY_COMPATIBLE",
                  "TTY_INTERACTIVE", "_TYPER_FORCE_DISABLE_TERMINAL", "JUPYTER_COLUMNS")
BOLD, DIM, BOLD_CYAN, BOLD_YELLOW, BOLD_GREEN, BOLD_DIM_YELLOW = (
    "1", "2", "1;36", "1;33", "1;32", "1;2;33")

Part = tuple[str, str]  # text and its SGR style ("": none)
# Piped output (scripts, CI) gets wide tables instead of Rich's 80 columns.
PIPED_WIDTH = 160


@dataclass(frozen=True)
class Screen:
    width: int
    styled: bool  # a terminal: Rich writes ANSI styles


def screen(stream: IO[str], width: int | None = None) -> Screen | None:
    """How a Rich console on ``stream`` writes (``width``: the console's fixed width), or None
    where Rich's own rules must decide."""
    if any(os.environ.get(name) is not None for name in _RICH_SWITCHES):
        return None
    try:
        styled = stream.isatty()
    except (AttributeError, ValueError):
        return None
    term = os.environ.get("TERM", "").strip().lower()
    if styled and term in ("dumb", "unknown"):
        return None
    width = width or terminal_width()
    return Screen(width, styled) if width else None


def terminal_width() -> int | None:
    """The width a Rich console without one finds: COLUMNS, else the first of stdin, stdout
    and stderr that is a terminal, else 80."""
    columns = os.environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        return int(columns) or None
    for descriptor in (0, 1, 2):
        try:
            return os.get_terminal_size(descriptor).columns or 80
        except (AttributeError, ValueError, OSError):
            continue
    return 80


@functools.cache
def console(err: bool = False) -> Console:
    """The Rich console hpo prints to stdout (or stderr) with, where plain text will not do."""
    from rich.console import Console

    if err:
        return Console(stderr=True, highlight=False)
    return Console(highlight=False, soft_wrap=True,
                   width=None if sys.stdout.isatty() else PIPED_WIDTH)


def _screen_of(err: bool) -> Screen | None:
    stream = sys.stderr if err else sys.stdout
    try:
        width = None if err or stream.isatty() else PIPED_WIDTH
    except (AttributeError, ValueError):
        return None
    return screen(stream, width)


def printable(text: str) -> str:
    """``text`` with each control or other unprintable character (ESC, BEL, CR, ...) written
    as its escape (``\\x1b``), newlines kept: names and values from storage, which others can
    write, must not move the cursor, clear the screen or retitle the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def say(text: str, *, err: bool = False) -> None:
    """Print a line as ``console(err).print(text, markup=False)`` does, unprintable characters
    escaped (see printable)."""
    text = printable(text)
    out = _screen_of(err)
    if out is not None and plain_text(text) and (not err or len(text) <= out.width):
        (sys.stderr if err else sys.stdout).write(text + "\n")
    else:
        console(err).print(text, markup=False)


def show_table(title: str, columns: Sequence[tuple[str, bool]],
               rows: Sequence[Sequence[str]]) -> None:
    """Print a table of ``columns`` (name, right-justified) on stdout, as Rich does, unprintable
    characters escaped (see printable)."""
    title = printable(title)
    rows = [[printable(cell) for cell in row] for row in rows]
    out = _screen_of(False)
    text = table(title, columns, rows, out) if out is not None else None
    if text is not None:
        sys.stdout.write(text)
        return
    from rich.table import Table
    from rich.text import Text

    shown = Table(title=Text(title), title_justify="left")
    for name, right in columns:
        shown.add_column(name, justify="right" if right else "left")
    for row in rows:  # stored strings: Text, which Rich never reads as markup
        shown.add_row(*map(Text, row))
    console().print(shown)


def plain_text(text: str) -> bool:
    """Text that Rich prints as it is: printable ASCII, no emoji codes such as :smile:."""
    return text.isascii() and text.isprintable() and not _emoji_code(text)


def _emoji_code(text: str) -> bool:
    start = text.find(":")
    while start != -1:
        end = text.find(":", start + 1)
        if end == -1:
            return False
        if end > start + 1 and all(c.isalnum() or c in "_+-" for c in text[start + 1:end]):
            return True
        start = end
    return False


def _paint(parts: Sequence[Part], styled: bool) -> str:
    return "".join(f"\x1b[{style}m{text}\x1b[0m" if styled and style else text
                   for text, style in parts if text)


def table(title: str, columns: Sequence[tuple[str, bool]], rows: Sequence[Sequence[str]],
          out: Screen) -> str | None:
    """A rich.table.Table of ``columns`` (name, right-justified) with a left-justified title,
    Rich's default box and a bold header, or None where Rich would wrap or measure a cell."""
    cells = [title, *(name for name, _ in columns), *(cell for row in rows for cell in row)]
    if not all(cell.isascii() and cell.isprintable() and cell == cell.strip() for cell in cells):
        return None
    widths = [max([len(name), *(len(row[i]) for row in rows)])
              for i, (name, _) in enumerate(columns)]
    total = sum(widths) + 3 * len(widths) + 1
    if total > out.width or len(title) > total:
        return None

    def rule(left: str, fill: str, joint: str, right: str) -> str:
        return left + joint.join(fill * (w + 2) for w in widths) + right

    def fit(text: str, i: int) -> str:
        return text.rjust(widths[i]) if columns[i][1] else text.ljust(widths[i])

    header: list[Part] = [("┃", "")]
    for i, (name, _) in enumerate(columns):
        header += [(" ", BOLD), (fit(name, i), BOLD), (" ", BOLD), ("┃", "")]
    lines = [title, rule("┏", "━", "┳", "┓"), _paint(header, out.styled),
             rule("┡", "━", "╇", "┩")]
    lines += ["│" + "│".join(f" {fit(cell, i)} " for i, cell in enumerate(row)) + "│"
              for row in rows]
    lines.append(rule("└", "─", "┴", "┘"))
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int) -> list[str] | None:
    """``text`` wrapped at spaces as Rich wraps it, or None where Rich would fold a word."""
    words = text.split(" ")
    if not words or any(not word or len(word) > width for word in words):
        return None
    lines = [words[0]]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def help_page(prog: str, description: str, commands: Sequence[tuple[str, str]],
              out: Screen) -> str | None:
    """Typer's help page of a command group with only --help as an option: the usage line,
    ``description`` and a panel of ``commands`` (name, first paragraph of its help)."""
    width = out.width
    if width < 60 or prog not in ("hpo", "python -m hpo") or not all(
            plain_text(text) for text in (description, *(h for _, h in commands))):
        return None
    name_width = max(len(name) for name, _ in commands)
    described = _wrap(description, width - 2)
    helps = [_wrap(text, width - name_width - 6) for _, text in commands]
    if described is None or any(lines is None for lines in helps):
        return None

    def padded(parts: list[Part], style: str = "") -> str:
        used = sum(len(text) for text, _ in parts)
        return _paint([(" ", style), *parts, (" " * (width - 2 - used), style), (" ", style)],
                      out.styled)

    def panel(title: str, rows: list[list[Part]]) -> list[str]:
        top = [("╭─", DIM), (f" {title} ", DIM), ("─" * (width - 6 - len(title)), DIM),
               ("─╮", DIM)]
        body = []
        for parts in rows:
            used = sum(len(text) for text, _ in parts)
            body.append(_paint([("│", DIM), (" ", ""), *parts, (" " * (width - 4 - used), ""),
                                (" ", ""), ("│", DIM)], out.styled))
        return [_paint(top, out.styled), *body, _paint([(f"╰{'─' * (width - 2)}╯", DIM)],
                                                       out.styled)]

    usage: list[Part] = [("Usage: ", BOLD_YELLOW)]
    if prog == "python -m hpo":
        usage += [("python ", BOLD), ("-m", BOLD_GREEN), (" hpo", BOLD)]
    else:
        usage += [("hpo", BOLD)]
    usage[-1] = (usage[-1][0] + " [OPTIONS] COMMAND [ARGS]...", BOLD)
    options = [[("-", BOLD_CYAN), ("-help", BOLD_CYAN), (" " * 8, ""), ("<", BOLD_DIM_YELLOW),
                ("bool", BOLD_YELLOW), (">", BOLD_DIM_YELLOW), ("  Show this message and exit.",
                                                                "")]]
    rows: list[list[Part]] = []
    for (name, _), lines in zip(commands, helps, strict=True):
        assert lines is not None
        for n, line in enumerate(lines):
            first = [(name.ljust(name_width), BOLD_CYAN), (" ", BOLD_CYAN)] if n == 0 \
                else [(" " * (name_width + 1), BOLD_CYAN)]
            rows.append([*first, (" " + line, "")])
    blank = _paint([(" " * width, BOLD)], out.styled)
    page = [blank, padded(usage, BOLD), blank,
            *(padded([(line, "")]) for line in described), " " * width,
            *panel("Options", options), *panel("Commands", rows), ""]
    return "\n".join(page) + "\n"
