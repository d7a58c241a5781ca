"""Reading a study back: counts, the best trial, wasted epochs and exports (``summary``), the
PNG and Markdown report (``report``), the test-set evaluation (``evaluate``) and the dashboard
(``dashboard``)."""
