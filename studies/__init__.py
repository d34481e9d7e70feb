"""circuitsim.studies: sweeps of crossbar tiles, HDF5 results, plots and Dask scale-out.

A study file (TOML) describes a tile, its conductance map and inputs, and a sweep of any of
their parameters; :func:`load_study` checks it, :func:`run_study` solves every point (batched,
in-process, on local processes or on Dask) and stores it atomically in HDF5, and
:func:`read_summary`, :func:`read_point` and :func:`plot_study` read and draw the results.
The command line is ``circuitsim study init|run|show|plot``.
"""

from .config import Point, Study, default_study_text, load_study
from .results import PointData, Summary, read_point, read_summary, verify
from .runner import RunReport, local_cluster, run_study
from .schema import StudyError
from .store import OutputError, WriteError


def plot_study(*args, **kwargs):
    """Write a study's figures; see :func:`circuitsim.studies.plots.plot_study`."""
    from .plots import plot_study as plot

    return plot(*args, **kwargs)


__all__ = [
    "OutputError",
    "Point",
    "PointData",
    "RunReport",
    "Study",
    "StudyError",
    "Summary",
    "WriteError",
    "default_study_text",
    "load_study",
    "local_cluster",
    "plot_study",
    "read_point",
    "read_summary",
    "run_study",
    "verify",
]
