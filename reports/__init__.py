"""Rendering only: terminal tables, figures, the HTML report, verdict sentences, reproduction rows.

Every number they show comes from ``forgetbench.benchmark.core.metrics`` (pure functions of a record).
"""

if __name__ == "reports":  # this checkout's folder imported by its own name (the repository root on sys.path)
    raise ImportError(
        "`reports` is a folder of forgetbench's checkout, not an import name: use `import forgetbench` "
        "(the public API) or `forgetbench.reports` (metrics: `forgetbench.benchmark.core.metrics`)"
    )
