"""The mutation check (run by hand: ``python tests/mutation/run.py``)."""
