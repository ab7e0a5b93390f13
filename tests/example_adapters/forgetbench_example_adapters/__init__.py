"""Example forgetbench scenario plug-in (registered through the forgetbench.scenarios entry point)."""
