"""What loralpha measures about LoRA optimization: the Signal-Drift decomposition of each update
(`signal_drift`), Hessian-vector products and eigenvalues (`hessian`), adapter- against full-weight
spectra and the optimization gap (`spectrum`), and the rules as points of the Adam plane (`plane`)."""
