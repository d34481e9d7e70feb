"""circuitsim.layers: weights to tiles to DNN layers (to come)."""
