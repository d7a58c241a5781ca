"""Where studies live: storage URLs (``urls``), opening the database (``engine``), riding out
its outages (``retry``), transactions that span several calls (``transactions``), and hpo's
records on a study (``records``, ``attributes``), which ``snapshot`` reads without Optuna.

Nothing here imports torch, so the commands that only read a study start fast.
"""
