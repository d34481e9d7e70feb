"""The mutation check is a script, run by hand (``tests/mutation/run.py``), never by pytest."""

collect_ignore = ["run.py"]
