"""How the ``restore`` executable ends (:func:`restore.cli.leave`): the command's exit status,
atexit handlers run, output flushed and files complete, without the interpreter's teardown."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

MAIN = "from restore.cli import main; main()"


def run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_the_status_and_the_atexit_handlers_survive_the_fast_exit():
    registered = "import atexit; atexit.register(lambda: print('atexit ran')); " + MAIN
    done = run(registered, "--version")
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "atexit ran", done
    assert "restore" in done.stdout.splitlines()[0]
    refused = run(registered, "inpaint", "no-such-file.png", "--mask", "no-such-mask.png", "-o", "out.png")
    assert refused.returncode == 2 and refused.stderr.startswith("error:"), refused
    assert refused.stdout.strip() == "atexit ran"


def test_a_written_image_and_run_record_are_complete(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    out = tmp_path / "y.png"
    done = run(MAIN, "degrade", str(tmp_path / "x.png"), "--op", "blur", "--param", "kernel=gaussian",
               "--param", "size=5", "--noise", "0.01", "-o", str(out))
    assert done.returncode == 0, done
    assert np.asarray(Image.open(out)).shape == (32, 32, 3)
    assert json.loads(out.with_suffix(".json").read_text())["operator"] == "blur"


def test_a_live_thread_is_waited_for_and_a_message_is_status_1():
    waits = ("import threading, time; from restore.cli import leave; "
             "threading.Thread(target=lambda: (time.sleep(0.5), print('thread done', flush=True))).start(); leave(3)")
    done = run(waits)
    assert done.returncode == 3 and done.stdout.strip() == "thread done", done
    said = run("from restore.cli import leave; leave('gave up')")
    assert said.returncode == 1 and said.stderr.strip() == "gave up", said
    assert run("from restore.cli import leave; leave(None)").returncode == 0
