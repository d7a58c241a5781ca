"""Training inside a trial: what an objective receives (``trial_run.TrialRun``), the training
loop (``loop``), the networks (``models``, ``backbones``), cached frozen-backbone features
(``features``) and best-model checkpoints (``checkpoints``)."""
