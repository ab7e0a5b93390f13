"""Rendering only: terminal tables, figures, the HTML report, verdict sentences, reproduction rows.

Every number they show comes from ``forgetbench.benchmark.core.metrics`` (pure functions of a record).
"""

if __name__ == "reports":  # the pre-layers import name, from a checkout: point it at forgetbench.reports
    from forgetbench.benchmark.legacy import alias_old_name

    alias_old_name(__name__)
