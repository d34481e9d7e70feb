"""circuitsim benchmarks: same-run timing ratios against baselines (see benchmarks/README.md).

Run ``python benchmarks/run.py [--quick | --full] [--only NAME]``. Not installed with the package.
"""
