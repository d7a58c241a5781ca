"""Running a study: the launch sequence (``launch``), the worker processes and their supervision
(``supervisor``), the trial budget they share (``budget``), one worker's ask-train-tell loop
(``worker``), which device each worker gets (``devices``) and what the terminal shows
(``progress``)."""
