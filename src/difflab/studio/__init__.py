"""difflab studio: a local web app that samples, compares, restores and edits with trained runs, through the
library's Pipeline and restore API (app.py: pages and API; jobs.py: the queue; work.py: the jobs; catalog.py: runs)."""
