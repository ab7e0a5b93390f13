"""Foundation: the registries, config validation, the run record and its store, metrics and statistics, stop and lock.

Imports nothing from the other layers; every other layer may import it."""
