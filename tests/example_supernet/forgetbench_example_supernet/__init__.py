"""A SPOS-style supernet in plain PyTorch, as a weight-sharing NAS user writes one (see ``spos``)."""
