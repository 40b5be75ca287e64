"""Layer 1: the one door to git: commands, in-process reads, ref names, notes."""
