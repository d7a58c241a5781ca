"""Where studies live: storage URLs (``urls``), opening and riding out outages of the database
(``database``), and reading and writing hpo's records on a study (``records``).

Nothing here imports torch, so the commands that only read a study start fast.
"""
