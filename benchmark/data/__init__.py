"""Data and model families: datasets, text corpora, models, data loaders, parameter-use detection, scenarios.

Imports only ``core``."""
