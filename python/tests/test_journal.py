"""A journal (a muster joblog, JOURNAL.results beside it): a rerun after the caller was
killed runs only what the journal does not record done, and still returns every result."""

import collections
import os
import subprocess
import sys
import textwrap

import muster
import tasks
from conftest import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))

CALLER = textwrap.dedent(
    """
    import functools, sys
    sys.path.insert(0, {here!r})
    import muster, tasks
    with muster.Pool(2, journal={journal!r}) as pool:
        print(pool.map(functools.partial(tasks.journaled, folder={folder!r}), range(20)))
    """
)


def done_records(journal):
    try:
        with open(journal, "rb") as file:
            return sum(1 for line in file if b"\tdone\t" in line)
    except OSError:
        return 0


def runs(folder):
    with open(os.path.join(folder, "runs")) as file:
        return collections.Counter(int(line) for line in file)


def test_a_rerun_after_kill_9_runs_only_what_was_not_done(tmp_path):
    folder, journal = str(tmp_path), str(tmp_path / "run.joblog")
    open(os.path.join(folder, "slow"), "w").close()
    script = CALLER.format(here=HERE, journal=journal, folder=folder)
    # The pool's own folder goes here, to be seen gone once the watchdog has outlived the caller.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    caller = subprocess.Popen([sys.executable, "-c", script], cwd=folder, stdout=subprocess.PIPE, env=env)
    try:
        # Ten quick tasks done, two slow ones running: then the caller dies.
        wait_for(lambda: os.path.exists(os.path.join(folder, "runs")) and sum(runs(folder).values()) >= 12, 30,
                 "12 tasks started")
        wait_for(lambda: done_records(journal) >= 10, 30, "the quick tasks journaled")
        caller.kill()
        caller.wait()
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
    assert [name for name in os.listdir(scratch) if name.startswith("muster-pool-")]
    wait_for(lambda: not os.listdir(scratch), 30, "the killed pool's folder removed by its watchdog")
    before = runs(folder)
    os.remove(os.path.join(folder, "slow"))
    rerun = subprocess.run([sys.executable, "-c", script], cwd=folder, stdout=subprocess.PIPE, timeout=60, check=True)
    assert rerun.stdout.decode().strip() == str([x * 10 for x in range(20)])
    after = runs(folder)
    # Each task recorded done ran once, in the first run; every other ran in the rerun.
    for x in range(20):
        assert after[x] == before[x] + (0 if x < 10 else 1), (x, before, after)


def test_a_finished_journal_reruns_nothing(tmp_path):
    folder, journal = str(tmp_path), str(tmp_path / "j")
    import functools

    job = functools.partial(tasks.journaled, folder=folder)
    with muster.Pool(2, journal=journal) as pool:
        assert pool.map(job, range(30)) == [x * 10 for x in range(30)]
    with muster.Pool(2, journal=journal) as pool:
        assert pool.map(job, range(30)) == [x * 10 for x in range(30)]
        assert pool.apply(tasks.square, (5,)) == 25
    assert runs(folder) == collections.Counter(range(30))
    with open(journal, "rb") as file:
        assert len(file.read().splitlines()) >= 31
