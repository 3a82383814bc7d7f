"""muster's orphan watchdog, served by the extension: `python -m muster._watchdog [FOLDER]`.

A pool starts one; it learns each worker's process group and, when the pool's process ends
(even by SIGKILL), stops every group still listed. See muster::process::watchdog. Then it
removes FOLDER, the pool's own (its functions and sys.path for the workers): a pool that
ends normally removes it itself, one killed cannot.
"""

import shutil
import sys

from muster._core import serve_watchdog

if __name__ == "__main__":
    try:
        serve_watchdog()
    finally:
        for folder in sys.argv[1:]:
            shutil.rmtree(folder, ignore_errors=True)
