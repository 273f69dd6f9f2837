"""Start-up time of the ``smsmenu`` command: the wall time of whole processes, best of N.

    .venv/bin/python benchmarks/cli_startup.py [--runs 15] [--top 8] [--source LABEL=DIR ...]

Three commands, each a new process ``python -c "from smsmenu.cli.main import main; main()"``:
``--help``, ``agent --help`` and ``agent show --agent 1 --json`` on a fresh SQLite ledger that
the code under test makes first (``db upgrade``, ``subscriber add``, ``agent open``). After one
warm-up run each, the runs go round robin (every source, every command, then again), so a
change in the machine's load falls on all of them alike. Prints the best and the median next
to the targets (and the least CPU time, user + system, which a busy machine inflates less),
then, per command, the imports that cost the most (``python -X importtime``: cumulative,
nested as Python prints them; and each package's own modules added up).

The code measured is the checkout beside this script; ``--source LABEL=DIR`` (repeatable)
measures other copies instead, e.g. an older commit unpacked with ``git archive``: DIR goes
first on PYTHONPATH. The children run with the bytecode cache on (PYTHONDONTWRITEBYTECODE is
cleared; the warm-up writes it), as a pip install leaves it.

Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
ENTRY = "from smsmenu.cli.main import main; main()"
SECRET = "cli-startup-benchmark-secret"
TRADE_PIN, MGMT_PIN = "135790", "246801"

#: (what is measured, its arguments, target wall time in seconds on a quiet machine)
COMMANDS = [
    ("smsmenu --help", ["--help"], 0.25),
    ("smsmenu agent --help", ["agent", "--help"], 0.25),
    ("smsmenu agent show --agent 1 --json", ["agent", "show", "--agent", "1", "--json"], 0.5),
]


@dataclass
class Source:
    """One copy of the code and the fresh SQLite ledger it made."""

    label: str
    folder: Path
    work: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.folder), env.get("PYTHONPATH")]))
        env["SMSMENU_DATABASE_URL"] = f"sqlite:///{self.work / 'ledger.db'}"
        env["SMSMENU_SECRET_KEY"] = SECRET
        return env

    def run(
        self, args: list[str], stdin: str = "", *flags: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *flags, "-c", ENTRY, *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.work,
            env=self.env(),
            check=False,
        )

    def checked(self, args: list[str], stdin: str = "") -> str:
        result = self.run(args, stdin)
        if result.returncode != 0:
            sys.exit(f"{self.label}: smsmenu {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def seed(self) -> None:
        """A fresh ledger with agent 1, made by this copy's own commands."""
        self.checked(["db", "upgrade"])
        phone = "13800000001"
        self.checked(["subscriber", "add", "--number", phone, "--kind=mobile", "--billing=prepaid"])
        pins = ["--trade-pin", "-", "--mgmt-pin", "-"]
        opened = ["agent", "open", "--phone", phone, "--deposit", "1000", *pins]
        self.checked(opened, stdin=f"{TRADE_PIN}\n{MGMT_PIN}\n")

    def timed(self, args: list[str]) -> tuple[float, float]:
        """Wall time and CPU time (user + system) of one run."""
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        self.checked(args)
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def imports(self, args: list[str], top: int) -> tuple[list[str], list[str]]:
        """The ``top`` imports by cumulative time, nested as ``-X importtime`` prints them, and
        the ``top`` packages by the time their own modules took (smsmenu's module by module)."""
        result = self.run(args, "", "-X", "importtime")
        rows, by_package = [], Counter[str]()
        for line in result.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            own, cumulative, name = line.removeprefix("import time:").split("|")
            rows.append((int(cumulative), name.rstrip()))
            module = name.strip()
            by_package[module if module.startswith("smsmenu.") else module.split(".")[0]] += int(
                own
            )
        rows.sort(key=lambda row: -row[0])
        return (
            [f"{us / 1000:8.1f} ms  {name}" for us, name in rows[:top]],
            [f"{us / 1000:8.1f} ms  {name}" for name, us in by_package.most_common(top)],
        )


def parse_source(text: str) -> tuple[str, Path]:
    label, _, folder = text.partition("=")
    if not folder:
        raise argparse.ArgumentTypeError("give LABEL=DIR")
    path = Path(folder).resolve()
    if not (path / "smsmenu" / "cli" / "main.py").is_file():
        raise argparse.ArgumentTypeError(f"{path} holds no smsmenu/cli/main.py")
    return label, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command")
    parser.add_argument("--top", type=int, default=8, help="imports shown per command")
    parser.add_argument("--source", type=parse_source, action="append", default=[])
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smsmenu-cli-startup-") as tmp:
        sources = [
            Source(label, folder, Path(tmp) / str(number))
            for number, (label, folder) in enumerate(options.source or [("this checkout", HERE)])
        ]
        for source in sources:
            source.work.mkdir()
            source.seed()
            for _, args, _ in COMMANDS:
                source.timed(args)  # warm-up: writes the bytecode cache
        times: dict[tuple[int, int], list[tuple[float, float]]] = {}
        for _ in range(options.runs):
            for s, source in enumerate(sources):
                for c, (_, args, _) in enumerate(COMMANDS):
                    times.setdefault((s, c), []).append(source.timed(args))
        load, cores = os.getloadavg()[0], os.cpu_count()
        print(f"{options.runs} runs each (load average {load:.2f}, {cores} cores); seconds")
        print(f"{'':14} {'command':38} {'best':>6} {'median':>6} {'cpu':>6}  target (wall)")
        for s, source in enumerate(sources):
            for c, (what, _, target) in enumerate(COMMANDS):
                walls = [wall for wall, _ in times[s, c]]
                best, median = min(walls), statistics.median(walls)
                cpu = min(cpu for _, cpu in times[s, c])
                verdict = "met" if best <= target else "missed"
                print(
                    f"{source.label[:14]:14} {what:38} {best:6.3f} {median:6.3f} {cpu:6.3f}"
                    f"  <= {target:.2f} {verdict}"
                )
        for source in sources:
            for what, args, _ in COMMANDS:
                nested, packages = source.imports(args, options.top)
                print(f"\n{source.label}: {what}: top imports by cumulative time")
                print("\n".join(nested))
                print(f"{source.label}: {what}: time of each package's own modules")
                print("\n".join(packages))


if __name__ == "__main__":
    main()
