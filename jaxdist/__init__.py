"""jaxdist: distributed and decentralized training algorithms as pure JAX functions."""
