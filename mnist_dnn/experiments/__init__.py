"""Experiments over many runs: one experiment, sweeps, bundles, executors, tuning, section 5.2.2."""
