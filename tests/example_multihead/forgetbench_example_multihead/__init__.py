"""A user's code, as it would be before forgetbench: a multi-head CNN and a SplitMNIST benchmark."""
