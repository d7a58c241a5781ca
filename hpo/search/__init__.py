"""How the next trial is chosen and when a trial stops early: samplers and pruners by name
(``algorithms``) and the floor and baseline guards in front of the pruner (``pruning``)."""
