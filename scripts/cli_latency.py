"""How fast the CLI answers (issue 50 item 2): wall time and peak memory of each command in a fresh process,
median of N runs. The configs it validates are written to a temporary folder (a top-level typo, a misspelt
strategy, an alias bomb, a params error, a good config); ``report`` runs on a results folder when given.

    python scripts/cli_latency.py [--repeats 5] [--report results/demo]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

GOOD = {
    "name": "latency",
    "seeds": [0],
    "scenarios": [{"name": "two_model", "params": {"dataset": "digits"}}],
    "strategies": [{"name": "naive"}, {"name": "wpl"}],
}
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdef", "bcdefg")
)


def _configs(folder: Path) -> dict[str, Path]:
    texts = {
        "typo": yaml.safe_dump(GOOD | {"sedes": [0]}),
        "unknown-name": yaml.safe_dump(GOOD | {"strategies": [{"name": "WPLL"}]}),
        "alias-bomb": BOMB,
        "params-error": yaml.safe_dump(GOOD | {"strategies": [{"name": "ewc", "params": {"ewc_lambda": -1}}]}),
        "good": yaml.safe_dump(GOOD),
    }
    paths = {}
    for name, text in texts.items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(text)
    return paths


def measure(args: list[str]) -> tuple[float, float]:
    """Seconds and peak resident MB of ``forgetbench ARGS`` in a fresh process (its own ru_maxrss, read by a
    wrapper so that earlier children do not count)."""
    wrapper = (
        "import resource, runpy, sys; sys.argv = ['forgetbench', *sys.argv[1:]]\n"
        "try:\n    from forgetbench.benchmark.front.cli import main; code = main(sys.argv[1:])\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_kb = int(done.stderr.strip().split("\n")[-1])
    return seconds, peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--report", type=Path, help="a results folder to time `report` on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        configs = _configs(Path(tmp))
        commands = {"--help": ["--help"], "list": ["list"]}
        commands |= {f"validate ({name})": ["validate", str(path), "--skip-data"] for name, path in configs.items()}
        if args.report:
            commands["report"] = ["report", str(args.report), "--output", str(Path(tmp) / "report.html")]
        print(f"{'command':<28} {'seconds':>8} {'peak MB':>8}   (median of {args.repeats})")
        for label, command in commands.items():
            runs = [measure(command) for _ in range(args.repeats)]
            print(
                f"{label:<28} {statistics.median(s for s, _ in runs):8.2f} {statistics.median(m for _, m in runs):8.0f}"
            )


if __name__ == "__main__":
    main()
