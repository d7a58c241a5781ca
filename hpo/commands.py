"""What ``hpo --help`` says of hpo and of each command, in the order it lists them.

hpo/cli.py gives these texts to Typer; hpo/reads.py prints the same top-level help page without
it. A command's first paragraph is its line in that page.
"""

from __future__ import annotations

DESCRIPTION = "Hyperparameter optimization for deep-learning training on shared Optuna studies."

HELP = {
    "studies": "List the studies hpo can run: built-in and installed (the hpo.studies entry "
               "points).",
    # Line breaks inside a paragraph are kept: Typer shows them as they are.
    "launch": "Create or resume a study and run trials on it with one worker per GPU (or CPU "
              "workers).\n\n"
              "Launching an existing study resumes it and adds --trials trials; settings not "
              "given are\nthose the study was last launched with.",
    "worker": "Join a study from this machine, with the spec its launch recorded.\n\n"
              "The study's recorded reference (a name, file or module) must resolve here too. "
              "If the study\ndoes not exist yet, it is created with the definition's defaults, "
              "so every machine can run\nthe same command.",
    "stop": "Stop a study on every machine: its workers finish (or interrupt) their trials "
            "and exit.\n\n"
            "The mark stays on the study until the next 'hpo launch' or 'hpo worker' on it.",
    "status": "Trials by state, best value and last activity, per study.",
    "best": "The best trial's value and params.",
    "export": "Every trial of a study: state, value, params, attributes (and curves, in JSON).",
    "trials": "List trials: number, state, value, params, duration and epochs.",
    "evaluate": "Measure the best (or given) trial's test-set accuracy once, and record it on "
                "the study.",
    "report": "Write the study's plots (PNG) and a Markdown summary that links them.",
    "dashboard": "Serve optuna-dashboard on the study storage, with the checkpoint artifacts.",
}


def summaries() -> list[tuple[str, str]]:
    """Each command's line in the help page: its name and first paragraph."""
    return [(name, text.split("\n\n")[0]) for name, text in HELP.items()]
