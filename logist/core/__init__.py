"""Layer 0: states, the record model, errors, job files, config, redaction, process facts. No git."""
