"""Hostile task code is stopped by the limits and reported; the warm environment survives
(topologies/workload/zygote.py, runner.py; issue 20, deliverable 3 and "Must show").

Real child processes, each bounded: wall time 2 s, CPU 1 s, 200 MiB of address space, 8
processes (RLIMIT_NPROC on the slot's own uid when run as root, so a fork bomb cannot touch
the machine), a private directory. One environment serves the whole module.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from topologies.workload.runner import Limits, WarmPython

LIMITS = Limits(cpu_s=1, memory_mb=200, processes=8, wall_s=2.0, file_mb=1)

HOSTILE = {
    "fork-bomb": "import os\nwhile True:\n    os.fork()",
    "quiet-fork-bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    "allocate-forever": "x = []\nwhile True:\n    x.append(' ' * 10**6)",
    "spin-forever": "while True:\n    pass",
    "sleep-forever": "import time\ntime.sleep(1000)",
    "write-outside": "open({escape!r}, 'w').write('pwned')",
    "shell-out": "import os\nos.system('touch {escape}.sh')",
    "ctypes-escape": "import ctypes\nctypes.CDLL(None).system(b'touch {escape}.c')",
    "rename-outside": "import os\nopen('f', 'w').write('x')\nos.rename('f', {escape!r} + '.mv')",
}


class Collector:
    def __init__(self):
        self.reports: dict[str, dict] = {}
        self.cv = threading.Condition()

    def __call__(self, report):
        with self.cv:
            self.reports[report["id"]] = report
            self.cv.notify_all()

    def wait(self, ids, timeout=30.0):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not all(i in self.reports for i in ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no report for {[i for i in ids if i not in self.reports]} after {timeout} s")
                self.cv.wait(left)
        return [self.reports[i] for i in ids]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    got = Collector()
    w = WarmPython(("json", "math"), work_root=tmp_path_factory.mktemp("work"), on_done=got, slots=4)
    w.start()
    yield w, got
    w.close()


def run_all(w, got, tasks, data=None, limits=None):
    for tid, src in tasks.items():
        while w.free_slots() == 0:
            time.sleep(0.01)
        w.run(tid, src, data, (limits or {}).get(tid, LIMITS))
    return dict(zip(tasks, got.wait(list(tasks))))


def uid_processes(uids):
    """Live processes (not zombies waiting to be reaped) of these uids."""
    n = 0
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.stat(f"/proc/{p}").st_uid in uids:
                    with open(f"/proc/{p}/stat", "rb") as f:
                        n += f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
            except (OSError, IndexError):
                pass
    return n


def test_task_code_runs_in_a_private_directory_and_returns_its_value(env):
    w, got = env
    r = run_all(w, got, {"sum": "import math\ndef main(d):\n    return {'s': math.fsum(d), 'cwd': __import__('os').getcwd()}",
                         "file": "open('a.txt', 'w').write('hi')\nresult = open('a.txt').read()",
                         "raises": "def main(d):\n    raise ValueError('bad input ' + str(d[0]))"}, data=[1, 2, 3])
    assert r["sum"]["ok"] and r["sum"]["value"]["s"] == 6.0 and r["sum"]["metered"] > 0
    cwd = Path(r["sum"]["value"]["cwd"])
    assert cwd.parent == w.work_root and not cwd.exists()  # private, and removed afterwards
    assert r["file"] == {**r["file"], "ok": True, "value": "hi"}
    assert not r["raises"]["ok"] and r["raises"]["error"] == "ValueError: bad input 1"
    assert "File \"<task>\", line 2, in main" in r["raises"]["trace"] and "zygote" not in r["raises"]["trace"]


def test_hostile_code_is_stopped_reported_and_the_worker_survives(env, tmp_path):
    w, got = env
    escape = str(tmp_path / "escaped")
    pid_before = w.pid
    tasks = {k: v.format(escape=escape) for k, v in HOSTILE.items()}
    r = run_all(w, got, tasks, limits={"spin-forever": Limits(cpu_s=1, memory_mb=200, processes=8, wall_s=6.0)})
    for k, rep in r.items():
        assert rep["ok"] is False, (k, rep)
    assert "BlockingIOError" in r["fork-bomb"]["error"] or "killed" in r["fork-bomb"]["error"], r["fork-bomb"]
    assert "CPU" in r["quiet-fork-bomb"]["error"] or "wall time" in r["quiet-fork-bomb"]["error"], r["quiet-fork-bomb"]
    assert "MemoryError" in r["allocate-forever"]["error"] or "memory" in r["allocate-forever"]["error"]
    spin = r["spin-forever"]  # the CPU limit stops it, unless a loaded machine gave it < 1 s of CPU in 6 s
    assert "CPU time limit" in spin["error"] or (spin["killed"].startswith("wall") and spin["cpu"] < 1.0), spin
    assert r["sleep-forever"]["error"] == "killed: wall time limit of 2.0 s"
    assert "outside its directory" in r["write-outside"]["error"]
    assert "may not os.system" in r["shell-out"]["error"]
    assert "may not ctypes" in r["ctypes-escape"]["error"]
    assert "outside its directory" in r["rename-outside"]["error"]
    assert not list(tmp_path.iterdir()), "a task wrote outside its directory"
    if os.geteuid() == 0:
        assert uid_processes(range(w.base_uid, w.base_uid + w.slots)) == 0, "a task's process outlived it"
    after = run_all(w, got, {"still-alive": "result = 42"})
    assert after["still-alive"]["value"] == 42
    assert w.pid == pid_before and w.zygote_starts == 1  # the same warm environment throughout
    assert sorted(os.listdir(w.work_root)) == []


def test_a_running_task_can_be_stopped(env):
    w, got = env
    w.run("to-stop", "import time\ntime.sleep(60)", None, LIMITS)
    time.sleep(0.2)
    w.stop("to-stop")
    (rep,) = got.wait(["to-stop"])
    assert rep["ok"] is False and rep["killed"] == "stopped"


def test_a_lost_environment_fails_its_tasks_and_comes_back(tmp_path):
    got = Collector()
    w = WarmPython(("json",), work_root=tmp_path / "w", on_done=got, slots=2)
    w.start()
    try:
        w.run("victim", "import time\ntime.sleep(60)", None, LIMITS)
        time.sleep(0.2)
        os.kill(w.pid, signal.SIGKILL)
        (rep,) = got.wait(["victim"])
        assert rep["ok"] is False and "environment was lost" in rep["error"]
        w.run("next", "result = 'back'", None, LIMITS)
        (rep,) = got.wait(["next"])
        assert rep["value"] == "back" and w.zygote_starts == 2
    finally:
        w.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="per-slot uids are used only when running as root")
def test_two_environments_on_one_machine_never_share_task_uids(tmp_path):
    """Ending a task kills every process of its slot's uid, so two workers' slots must never share one (a shared
    uid let one worker's finished task kill another worker's running task)."""
    a = WarmPython(work_root=tmp_path / "a", slots=4)
    b = WarmPython(work_root=tmp_path / "b", slots=4)
    try:
        ra, rb = set(range(a.base_uid, a.base_uid + 4)), set(range(b.base_uid, b.base_uid + 4))
        assert not ra & rb and a.base_uid >= 200_000
    finally:
        base = a.base_uid
        a.close()
        b.close()
    c = WarmPython(work_root=tmp_path / "c", slots=4)
    assert c.base_uid == base  # the block is free again once its environment closed
    c.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="per-slot uids are used only when running as root")
def test_a_descendant_that_left_the_process_group_is_killed_at_the_tasks_end(tmp_path):
    got = Collector()
    # an environment of its own: the module's slots may still count a fork bomb's zombies against RLIMIT_NPROC
    w = WarmPython(("json",), work_root=tmp_path / "w", on_done=got, slots=1)
    w.start()
    try:
        r = run_all(w, got, {"escapee": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(100)\n"
                                        "result = 'parent done'"})
        assert r["escapee"]["ok"] and r["escapee"]["value"] == "parent done", r["escapee"]
        assert uid_processes(range(w.base_uid, w.base_uid + w.slots)) == 0, "the setsid descendant outlived its task"
    finally:
        w.close()


# ---------------------------------------------------------------- the shell environment (deliverable 3)

HOSTILE_SHELL = {  # the fork bombs last: a slot may count their zombies against RLIMIT_NPROC for a moment
    "steal-the-output": "rm -f output.txt; ln -s /etc/shadow output.txt; echo done",
    "write-outside": "echo pwned > {escape}",
    "fill-the-disk": "s=0123456789abcdef; s=$s$s$s$s$s$s$s$s; s=$s$s$s$s$s$s$s$s; s=$s$s$s$s$s$s$s$s\n"
                     "while :; do echo $s; done > big",  # shell builtins only: 8 KiB a write
    "sleep-forever": "sleep 1000",
    "spin-forever": "while :; do :; done",
    "fork-bomb": "f() {{ f | f; }}; f",
    "background-fork-bomb": "f() {{ f | f & }}; f",  # the shell exits at once: the end of the task kills the rest
}


@pytest.fixture(scope="module")
def shell_env(tmp_path_factory):
    """A shell environment: its prepared working directory holds a tool every task finds in its own directory."""
    prepared = tmp_path_factory.mktemp("prepared")
    (prepared / "tool.sh").write_text('echo "tool says $1"\n')
    got = Collector()
    w = WarmPython(("json",), work_root=tmp_path_factory.mktemp("shwork"), on_done=got, slots=4, shell_dir=prepared)
    w.start()
    yield w, got
    w.close()


def run_shell(w, got, tasks, data=None, limits=None):
    for tid, src in tasks.items():
        while w.free_slots() == 0:
            time.sleep(0.01)
        w.run(tid, src, data, (limits or {}).get(tid, LIMITS), kind="shell")
    return dict(zip(tasks, got.wait(list(tasks))))


def test_a_shell_task_runs_in_a_copy_of_the_prepared_directory_with_its_data(shell_env):
    w, got = shell_env
    r = run_shell(w, got, {"tool": 'sh tool.sh "$(cat data.json)"; pwd', "fails": "echo oops >&2; exit 3"},
                  data={"n": 7})
    assert r["tool"]["ok"], r["tool"]
    out = r["tool"]["value"]["output"].splitlines()
    assert r["tool"]["value"]["exit"] == 0 and out[0] == 'tool says {"n": 7}'
    assert Path(out[1]).parent == w.work_root and not Path(out[1]).exists()  # private, removed afterwards
    assert r["fails"]["ok"] is False and "exit status 3" in r["fails"]["error"] and "oops" in r["fails"]["trace"]


def test_hostile_shell_payloads_are_stopped_reported_and_the_worker_survives(shell_env, tmp_path):
    w, got = shell_env
    escape = tmp_path / "escaped"
    pid_before = w.pid
    tasks = {k: v.format(escape=escape) for k, v in HOSTILE_SHELL.items()}
    limits = {"spin-forever": Limits(cpu_s=1, memory_mb=200, processes=8, wall_s=6.0)}
    r = run_shell(w, got, tasks, limits=limits)
    for k in ("fork-bomb", "spin-forever", "sleep-forever", "fill-the-disk"):
        assert r[k]["ok"] is False, (k, r[k])
    spin = r["spin-forever"]  # the CPU limit stops it, unless a loaded machine gave it < 1 s of CPU in 6 s
    assert "CPU time limit" in spin["error"] or (spin["killed"].startswith("wall") and spin["cpu"] < 1.0), spin
    assert r["sleep-forever"]["error"] == "killed: wall time limit of 2.0 s"
    assert "file size limit" in r["fill-the-disk"]["error"], r["fill-the-disk"]  # SIGXFSZ
    # the task's own output is read through the zygote's descriptor, never through what the task left at the path
    assert r["steal-the-output"]["ok"] and r["steal-the-output"]["value"]["output"] == "done\n"
    if os.geteuid() == 0:  # as its slot's own unprivileged uid, a shell task cannot write where root's files live
        assert r["write-outside"]["ok"] is False and "Permission denied" in r["write-outside"]["trace"]
        assert not escape.exists(), "a shell task wrote outside its directory"
        assert uid_processes(range(w.base_uid, w.base_uid + w.slots)) == 0, "a shell task's process outlived it"
    after = run_shell(w, got, {"still-alive": "echo 42"})
    assert after["still-alive"]["value"]["output"] == "42\n"
    assert w.pid == pid_before and w.zygote_starts == 1  # the same environment throughout
    assert sorted(os.listdir(w.work_root)) == []


def test_an_unknown_environment_is_refused():
    w = WarmPython(("json",), slots=1)
    try:
        with pytest.raises(RuntimeError, match="no 'ruby' environment"):
            w.run("t", "puts 1", None, LIMITS, kind="ruby")
    finally:
        w.close()
