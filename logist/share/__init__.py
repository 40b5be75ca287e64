"""Layer 5: sharing and housekeeping: push/fetch, cleanup, workers, doctor, init/hooks."""
