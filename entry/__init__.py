"""The ways in: the Cloud Function's message handling (function.py) and the command line (cli.py)."""
