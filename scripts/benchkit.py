"""What every benchmark script shares: the machine's load, CPU per unit of work, result records
and their Markdown/JSON reports. Standard library only, so it loads before the project does.

Wall time on a shared machine moves with whatever else runs; the CPU time our own processes
spend per unit of work barely does. Every figure therefore carries both, and every run records
the 1-minute load average before and after and is flagged when either exceeded the core count.

CPU is read two ways:

* :class:`ChildCPU`: ``getrusage(RUSAGE_CHILDREN)`` deltas around work done by child processes
  this script waits for. With :func:`become_subreaper`, detached grandchildren (the hook's
  delivery process, the cloud sync) are re-parented here and reaped by :func:`reap_strays`, so
  their CPU is counted too.
* :class:`TreeCPU`: ``/proc/<pid>/stat`` of long-running processes and all their descendants
  (utime + stime, plus cutime + cstime for the children they reaped), sampled at the start and
  end of a phase.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# -- load -------------------------------------------------------------------------------------


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclasses.dataclass
class Load:
    """The 1-minute load average around a run; ``loaded`` when it exceeded the core count."""

    before: float
    after: float | None = None
    cores: int = dataclasses.field(default_factory=cores)

    @classmethod
    def start(cls, name: str = "") -> Load:
        load = cls(before=os.getloadavg()[0])
        print(f"{name + ': ' if name else ''}load average before: {load.before:.2f} "
              f"({load.cores} cores)", file=sys.stderr, flush=True)
        return load

    def finish(self, name: str = "") -> Load:
        self.after = os.getloadavg()[0]
        print(f"{name + ': ' if name else ''}load average after: {self.after:.2f}"
              + (f" — LOADED (above {self.cores} cores): wall figures are not comparable"
                 if self.loaded else ""), file=sys.stderr, flush=True)
        return self

    @property
    def loaded(self) -> bool:
        return max(self.before, self.after or 0.0) > self.cores

    def flag(self) -> str:
        return (f"loaded {self.before:.1f}→{self.after or 0:.1f} on {self.cores} cores"
                if self.loaded else "")

    def as_dict(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after, "cores": self.cores,
                "loaded": self.loaded}


# -- CPU ---------------------------------------------------------------------------------------


def children_cpu() -> float:
    """User + system seconds of every child reaped so far (and of their reaped descendants)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class ChildCPU:
    """CPU seconds of the children reaped between construction (or :meth:`reset`) and now."""

    def __init__(self) -> None:
        self.start = children_cpu()

    def reset(self) -> None:
        self.start = children_cpu()

    def seconds(self) -> float:
        return children_cpu() - self.start


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux ``PR_SET_CHILD_SUBREAPER``),
    so that once reaped their CPU shows in ``RUSAGE_CHILDREN``. False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(36, 1, 0, 0, 0)) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def child_pids(pid: int | None = None) -> set[int]:
    """Live children of ``pid`` (default: this process), from /proc."""
    parent = os.getpid() if pid is None else pid
    return {p for p, ppid in _parents().items() if ppid == parent}


def reap_strays(keep: Iterable[int] = (), timeout: float = 30.0) -> int:
    """Wait for every child of ours not in ``keep`` (detached grandchildren adopted as
    subreaper) to exit and reap it; returns how many. Children still alive at the deadline are
    left alone."""
    keep = set(keep)
    deadline = time.monotonic() + timeout
    reaped = 0
    while True:
        strays = child_pids() - keep
        if not strays:
            return reaped
        for pid in strays:
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                reaped += done != 0
        if time.monotonic() > deadline:
            return reaped
        time.sleep(0.005)


def _parents() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                out[int(entry.name)] = int(stat[1])
    return out


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 onwards)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def process_cpu(pid: int, *, reaped_children: bool = True) -> float | None:
    """utime + stime (+ cutime + cstime) seconds of one process, None once it is gone."""
    stat = _stat(pid)
    if stat is None:
        return None
    ticks = int(stat[11]) + int(stat[12])
    if reaped_children:
        ticks += int(stat[13]) + int(stat[14])
    return ticks / _TICK


def descendants(roots: Iterable[int]) -> set[int]:
    parents = _parents()
    found = {r for r in roots if r in parents}
    grew = True
    while grew:
        more = {p for p, ppid in parents.items() if ppid in found} - found
        grew = bool(more)
        found |= more
    return found


class TreeCPU:
    """CPU of process trees over a phase: ``snapshot()`` at both ends, ``seconds()`` between.

    Sums, over every process seen at either end, its CPU at the end (0 if gone) minus at the
    start (0 if new), reaped children included. A child that exits during the phase is then
    counted once, through its parent's ``cutime``, as long as its parent is in the tree.
    ``extra`` adds processes found by a callable (PostgreSQL backends of one database).
    """

    def __init__(self, roots: Iterable[int] = (),
                 extra: Callable[[], Iterable[int]] | None = None) -> None:
        self.roots = list(roots)
        self.extra = extra
        self.start: dict[int, float] = {}

    def _sample(self) -> dict[int, float]:
        pids = descendants(self.roots)
        if self.extra is not None:
            pids |= set(self.extra())
        values = {pid: process_cpu(pid) for pid in pids}
        return {pid: v for pid, v in values.items() if v is not None}

    def snapshot(self) -> None:
        self.start = self._sample()

    def seconds(self) -> float:
        end = self._sample()
        return sum(end.get(p, 0.0) - self.start.get(p, 0.0) for p in set(end) | set(self.start))


def postgres_backends(admin_url: str, database: str) -> Callable[[], list[int]]:
    """A callable listing the backend pids connected to ``database`` (local server), for
    :class:`TreeCPU`'s ``extra``."""

    def pids() -> list[int]:
        import psycopg

        with psycopg.connect(admin_url, autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                (database,)).fetchall()
        return [int(r[0]) for r in rows]

    return pids


# -- results ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    """One figure: a wall-clock value and the CPU per unit of work beside it."""

    bench: str
    measure: str
    wall: float | None
    wall_unit: str
    cpu_ms: float | None = None
    unit: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Report:
    """What one benchmark script hands to ``bench_all.py`` (``--json FILE``)."""

    bench: str
    load: Load
    results: list[Result] = dataclasses.field(default_factory=list)
    error: str | None = None

    def add(self, measure: str, wall: float | None, wall_unit: str, cpu_ms: float | None = None,
            unit: str = "", target: str = "", met: bool | None = None, note: str = "") -> Result:
        result = Result(self.bench, measure, wall, wall_unit, cpu_ms, unit, target, met, note)
        self.results.append(result)
        cpu = f"; CPU {_fmt(cpu_ms)} ms/{unit}" if cpu_ms is not None else ""
        aim = f" (target {target}: {'met' if met else 'NOT met'})" if target and met is not None \
            else (f" (target {target})" if target else "")
        print(f"[{self.bench}] {measure}: {_fmt(wall)} {wall_unit}{cpu}{aim}", flush=True)
        return result

    def as_dict(self) -> dict[str, Any]:
        return {"bench": self.bench, "load": self.load.as_dict(),
                "results": [r.as_dict() for r in self.results], "error": self.error}


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


RESULT_FIELDS = ("bench", "measure", "wall", "wall_unit", "cpu_ms", "unit", "target", "met",
                 "note")


def markdown(reports: Sequence[dict[str, Any]]) -> str:
    """The table the README's Performance section is copied from."""
    lines = ["| benchmark | measure | wall | CPU per unit | target | load |",
             "|---|---|---|---|---|---|"]
    for report in reports:
        load = report.get("load") or {}
        flag = (f"⚠ {load.get('before', 0):.1f}→{load.get('after') or 0:.1f} "
                f"on {load.get('cores')} cores" if load.get("loaded") else "ok")
        if report.get("error"):
            lines.append(f"| {report['bench']} | **failed**: {_cell(report['error'])} | — | — "
                         f"| — | {flag} |")
        for r in report.get("results", []):
            cpu = f"{_fmt(r['cpu_ms'])} ms/{r['unit']}" if r.get("cpu_ms") is not None else "—"
            target = r.get("target") or "—"
            if r.get("target") and r.get("met") is not None:
                target += " ✓" if r["met"] else " ✗"
            note = f" ({_cell(r['note'])})" if r.get("note") else ""
            lines.append(f"| {r['bench']} | {_cell(r['measure'])}{note} | "
                         f"{_fmt(r['wall'])} {r['wall_unit']} | {cpu} | {_cell(target)} | "
                         f"{flag} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# -- running ----------------------------------------------------------------------------------


@contextlib.contextmanager
def reporting(bench: str, json_path: Path | None) -> Iterator[Report]:
    """Load before/after, and the report written to ``json_path`` on every exit path; any
    failure becomes one line on stderr and exit status 1, never a traceback
    (``BENCH_TRACEBACK=1`` shows it)."""
    report = Report(bench, Load.start(bench))
    code = 0
    try:
        yield report
    except KeyboardInterrupt:
        report.error, code = "interrupted", 130
    except SystemExit as exc:  # a script's own one-line refusal
        if exc.code not in (None, 0):
            report.error = str(exc.code) if not isinstance(exc.code, int) else f"exit {exc.code}"
            code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # the one place that turns failures into a line
        if os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exc()
        report.error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]
        code = 1
    report.load.finish(bench)
    if report.error:
        print(f"{bench}: error: {report.error}", file=sys.stderr, flush=True)
    if json_path is not None:
        write_json(json_path, report.as_dict())
    if code:
        raise SystemExit(code)
