"""The composition root: `python -m worker` runs every workflow and activity on the task queue.

`worker.wiring` builds the activity adapters from the configuration (the one place things are
wired); `worker.main` runs the Temporal worker until SIGINT/SIGTERM.
"""
