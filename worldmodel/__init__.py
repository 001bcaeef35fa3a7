"""The JAX world model, datasets, recording and the `worldmodel` CLI."""
