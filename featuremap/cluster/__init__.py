"""Where jobs run: the Dask client (local cluster, address, TLS), SLURM, and devices."""
