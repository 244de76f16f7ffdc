"""Patient and prescriber portals: each sees published results they are entitled to,
and nothing else."""
