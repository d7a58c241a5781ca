"""Running a study: the launch (``launch``), the worker processes and their supervision
(``supervisor``), each worker's pipe to its launcher (``channel``), the trial budget and what
counts against it (``budget``), one worker's ask-train-tell loop (``worker``), trials left
RUNNING by a worker that is gone (``stale``), which device each worker gets (``devices``) and
what the terminal shows (``progress``)."""
