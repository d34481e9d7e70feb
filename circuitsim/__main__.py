"""``python -m circuitsim ...`` runs the command line (see :mod:`circuitsim.cli`)."""

from circuitsim.cli import main

raise SystemExit(main())
