"""How fast the CLI answers: wall time and peak memory of each command in a fresh process, median of perf's
``--repeats``. The configs it validates are written to a temporary folder (a top-level typo, a misspelt strategy,
an alias bomb, a params error, a good config); ``report`` runs on a results folder when given.

    forgetbench perf --only cli_latency --repeats 3 --set results=/tmp/demo
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, DirectoryPath

from forgetbench.benchmark.perf.measurements import Measurement, register

GOOD = {
    "name": "latency",
    "seeds": [0],
    "scenarios": [{"name": "two_model", "params": {"dataset": "digits"}}],
    "strategies": [{"name": "naive"}, {"name": "wpl"}],
}
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdef", "bcdefg")
)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    results: DirectoryPath | None = None  # a results folder to time `report` on


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


# forgetbench ARGS, timed by a light launcher that reads the command's peak memory off its own children: a process
# started straight from perf's (torch and Avalanche loaded) would report perf's peak as its own (Linux keeps the
# high-water mark across fork and exec)
LAUNCHER = """
import resource, subprocess, sys, time
command = "from forgetbench.benchmark.front.cli import console_main; console_main()"  # the console script
start = time.perf_counter()
subprocess.run([sys.executable, "-c", "import sys; " + command, *sys.argv[1:]], capture_output=True)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def measure(args: list[str]) -> tuple[float, float]:
    """Seconds and peak resident MB of ``forgetbench ARGS`` in a fresh process."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *args], capture_output=True, text=True, check=True)
    seconds, peak_kb = done.stdout.split()
    return float(seconds), int(peak_kb) / 1024


def run(opts: Any, params: Params, data: Any) -> dict[str, Any]:
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        commands = {"--help": ["--help"], "list": ["list"]}
        commands |= {
            f"validate ({name})": ["validate", str(path), "--skip-data"] for name, path in _configs(Path(tmp)).items()
        }
        if params.results:
            commands["report"] = ["report", str(params.results), "--output", str(Path(tmp) / "report.html")]
        for label, command in commands.items():
            runs = [measure(command) for _ in range(opts.repeats)]
            result[label] = {
                "seconds": statistics.median(s for s, _ in runs),
                "peak_mb": statistics.median(m for _, m in runs),
            }
    return {"repeats": opts.repeats, "commands": result}


def lines(result: dict[str, Any]) -> list[str]:
    out = [f"{'command':<28} {'seconds':>8} {'peak MB':>8}   (median of {result['repeats']})"]
    for label, r in result["commands"].items():
        out.append(f"{label:<28} {r['seconds']:8.2f} {r['peak_mb']:8.0f}")
    return out


register(Measurement("cli_latency", "each command's seconds and peak memory in a fresh process", Params, run, lines))
