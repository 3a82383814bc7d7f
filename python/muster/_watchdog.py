"""muster's orphan watchdog, served by the extension: `python -m muster._watchdog`.

A pool starts one; it learns each worker's process group and, when the pool's process ends
(even by SIGKILL), stops every group still listed. See muster::process::watchdog.
"""

from muster._core import serve_watchdog

if __name__ == "__main__":
    serve_watchdog()
