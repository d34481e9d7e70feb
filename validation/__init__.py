"""circuitsim.validation: ngspice cross-checks (to come)."""
