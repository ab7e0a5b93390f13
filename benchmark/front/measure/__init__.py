"""Measurement code: ``forgetbench perf`` (:mod:`.perf`) and the report-timing script (:mod:`.timing`).

Kept out of the packages users import to run suites: nothing in ``benchmark``, ``strategies`` or
``reports`` imports this package; only the CLI's ``perf`` command does, when it is called.
"""
