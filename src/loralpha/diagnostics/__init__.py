"""What loralpha measures about LoRA optimization: the Signal-Drift decomposition of each update
(`signal_drift`), Hessian-vector products and eigenvalues (`hessian`) and the rules as points of the Adam
plane (`plane`). Nothing here trains: a measurement that trains first (`studies.spectrum`) is a study."""
