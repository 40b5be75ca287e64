"""Layer 2: the job store: records on branches, ref transactions, locks, the state table."""
