"""``hpo`` and ``python -m hpo``: the read commands and ``--help`` are answered at once
(hpo.reads); every other command line goes to the Typer app in hpo/cli.py."""

from __future__ import annotations

import sys


def main() -> None:
    from hpo import reads

    code = reads.answer(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from hpo.cli import app

    app()


if __name__ == "__main__":
    main()
