"""Layer 4: use-cases that run steps: the step engine, rerun/restep, recovery, the side process."""
