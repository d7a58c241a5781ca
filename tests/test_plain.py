"""hpo/plain.py: hpo's tables and its top-level help page, laid out without Rich and Typer, are
byte for byte what Rich and Typer write, on a terminal and piped; where they could differ, the
functions decline and Rich decides."""

from __future__ import annotations

import io
import random

import pytest
import typer.rich_utils
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hpo import commands, plain
from hpo.cli import app


def rich_table(title: str, columns, rows, width: int, styled: bool) -> str:
    """What hpo printed with Rich before hpo.plain (and still prints where plain declines)."""
    out = io.StringIO()
    console = Console(file=out, highlight=False, soft_wrap=True, width=width,
                      force_terminal=styled, color_system="standard" if styled else None)
    table = Table(title=Text(title), title_justify="left")
    for name, right in columns:
        table.add_column(name, justify="right" if right else "left")
    for row in rows:
        table.add_row(*map(Text, row))
    console.print(table)
    return out.getvalue()


def random_tables(seed: int, count: int):
    rng = random.Random(seed)
    for _ in range(count):
        n = rng.randint(1, 8)
        columns = [("".join(rng.choice("abcdefg #") for _ in range(rng.randint(1, 9))).strip()
                    or "x", rng.random() < 0.5) for _ in range(n)]
        rows = [["".join(rng.choice("abc123.-=, ()#[]") for _ in range(rng.randint(0, 20)))
                 .strip() or "-" for _ in range(n)] for _ in range(rng.randint(0, 4))]
        yield "Studies in " + "x" * rng.randint(1, 120), columns, rows


@pytest.mark.parametrize("styled", [False, True], ids=["piped", "terminal"])
def test_a_table_is_what_rich_writes(styled: bool) -> None:
    laid_out = 0
    for title, columns, rows in random_tables(seed=int(styled), count=200):
        for width in (40, 80, 160):
            mine = plain.table(title, columns, rows, plain.Screen(width, styled))
            if mine is not None:
                laid_out += 1
                assert mine == rich_table(title, columns, rows, width, styled)
    assert laid_out > 100  # most: the rest are wider than the screen, and Rich wraps them


@pytest.mark.parametrize(("title", "cells"), [
    ("Studies in x", ["caf\u00e9"]),  # not ASCII: Rich measures cells
    ("Studies in x", ["a\nb"]),  # a line break: two lines in the cell
    ("Studies in x", ["trailing "]),  # Rich trims it in a right-justified cell
    ("Studies in " + "x" * 200, ["1"]),  # a title wider than the table: Rich wraps it
    ("Studies in x", ["y" * 200]),  # wider than the screen
])
def test_a_table_plain_text_cannot_lay_out_is_left_to_rich(title: str, cells: list[str]
                                                           ) -> None:
    assert plain.table(title, [("c", True)], [cells], plain.Screen(160, False)) is None


@pytest.mark.parametrize("styled", [False, True], ids=["piped", "terminal"])
@pytest.mark.parametrize("prog", ["hpo", "python -m hpo"])
@pytest.mark.parametrize("width", [60, 61, 73, 80, 97, 100, 120, 160, 200])
def test_the_help_page_is_what_typer_writes(styled: bool, prog: str, width: int,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", width)
    monkeypatch.setattr(typer.rich_utils, "FORCE_TERMINAL", styled)
    monkeypatch.setenv("TERM", "xterm-256color")
    with pytest.raises(SystemExit):
        app(["--help"], prog_name=prog)
    typer_page = capsys.readouterr().out
    page = plain.help_page(prog, commands.DESCRIPTION, commands.summaries(),
                           plain.Screen(width, styled))
    assert page == typer_page


def test_the_help_page_leaves_narrow_screens_and_other_names_to_typer() -> None:
    summaries = commands.summaries()
    assert plain.help_page("hpo", commands.DESCRIPTION, summaries, plain.Screen(59, False)) \
        is None
    assert plain.help_page("hpo-dev", commands.DESCRIPTION, summaries,
                           plain.Screen(80, False)) is None


def rich_print(text: str) -> str:
    out = io.StringIO()
    Console(file=out, highlight=False, soft_wrap=True, width=160).print(text, markup=False)
    return out.getvalue()


@pytest.mark.parametrize("text", ["Best val_accuracy of s: 0.9000 (trial 3)",
                                  "  lr           0.001", "[bold]x[/]",
                                  "Wrote 3 trial(s) of s to t.csv."])
def test_plain_text_is_what_rich_prints_unchanged(text: str) -> None:
    assert plain.plain_text(text)
    assert rich_print(text) == text + "\n"


@pytest.mark.parametrize("text", ["a study called :smile:", "bell\x07"])
def test_text_rich_would_change_is_left_to_rich(text: str) -> None:
    assert not plain.plain_text(text)
    assert rich_print(text) != text + "\n"  # an emoji; a control character dropped


@pytest.mark.parametrize("variable", ["FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE"])
def test_settings_that_change_rich_s_choices_leave_them_to_rich(
        variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, "1")
    assert plain.screen(io.StringIO(), 160) is None


def test_the_screen_width_follows_rich_s_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "123")
    assert plain.screen(io.StringIO()) == plain.Screen(123, styled=False)
    assert plain.screen(io.StringIO(), 160) == plain.Screen(160, styled=False)
    assert Console(file=io.StringIO()).width == 123
