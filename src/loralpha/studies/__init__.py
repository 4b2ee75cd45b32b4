"""Studies built on runs and sweeps: trial records (`records`), the α*(r) law (`laws`), calibrating c
(`calibrate`), several rules side by side (`compare`), adapter- against full-weight Hessian spectra and the
optimization gap (`spectrum`) and the demo (`demo`)."""
