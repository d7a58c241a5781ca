"""hpo/errors.py: the sentence a user sees quotes only the first line of an error."""

from __future__ import annotations

import pytest

from hpo.errors import HpoError, first_line


@pytest.mark.parametrize(
    ("error", "options", "expected"),
    [
        (ValueError("bad value\nTraceback-ish detail"), {}, "bad value"),
        (ValueError("  padded  \n"), {}, "padded"),
        (ValueError(""), {}, "ValueError"),
        (ValueError(""), {"typed": True}, "ValueError"),
        (KeyError("x"), {"typed": True}, "KeyError: 'x'"),
        (OSError("a" * 300), {"limit": 200}, "a" * 200),
        (RuntimeError("boom\nmore"), {"typed": True, "limit": 9}, "RuntimeEr"),
    ],
)
def test_first_line(error: BaseException, options: dict, expected: str) -> None:
    assert first_line(error, **options) == expected


def test_an_hpo_error_carries_its_exit_code() -> None:
    assert HpoError("x").exit_code == 1 and HpoError("x", exit_code=3).exit_code == 3
