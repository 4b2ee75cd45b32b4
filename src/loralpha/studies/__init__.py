"""Studies built on runs and sweeps: trial records (`records`), the α*(r) law (`laws`), calibrating c
(`calibrate`), several rules side by side (`compare`) and the demo (`demo`)."""
