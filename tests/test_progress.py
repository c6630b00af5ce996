"""fit's progress display: lines that fit the terminal (driven through a pseudo-terminal), one
line per epoch when the output is not a terminal, tqdm and rich when installed."""
from __future__ import annotations

import io
import os
import re
import select
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import steepest as st
from steepest.progress import epoch_line, status_line

pty = pytest.importorskip("pty")  # POSIX only
fcntl = pytest.importorskip("fcntl")
termios = pytest.importorskip("termios")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")

# A fit whose epochs are long enough for several redraws within each.
FIT_SCRIPT = textwrap.dedent("""
    import sys
    for name in {blocked!r}:
        sys.modules[name] = None  # as if not installed
    import numpy as np
    import steepest as st
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40000, 32)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = st.Sequential(st.Dense(32, 512), st.ReLU(), st.Dense(512, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.01)
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs={epochs},
              batch_size=2, validation_split=0.1, verbose=1)
    print("done")
""")


def run_in_terminal(script, columns, set_env, timeout=240):
    """Runs script with stdin, stdout and stderr on a pseudo-terminal `columns` wide (its
    window size; also $COLUMNS when set_env); returns everything it wrote."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, np.array([24, columns, 0, 0], np.uint16).tobytes())
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm"
    if set_env:
        env["COLUMNS"] = str(columns)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=slave, stdout=slave,
                            stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed its side
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        os.close(master)
    return b"".join(chunks).decode("utf-8", errors="replace")


def screen_lines(text) -> list:
    """What the terminal shows line by line: every piece between carriage returns and newlines,
    control sequences removed."""
    return re.split(r"[\r\n]", ANSI.sub("", text))


@pytest.mark.parametrize("set_env", [True, False], ids=["COLUMNS", "winsize"])
def test_own_bar_fits_an_80_column_terminal(set_env):
    epochs = 3
    out = run_in_terminal(FIT_SCRIPT.format(blocked=("tqdm", "rich"), epochs=epochs), 80,
                          set_env)
    assert "done" in out, out
    lines = screen_lines(out)
    too_long = [line for line in lines if len(line) >= 80]
    assert not too_long, too_long
    finished = [line for line in lines if re.match(r"epoch \d/3: loss=", line)]
    assert [line.split(":")[0] for line in finished] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    for line in finished:  # the validation values fit too, in short form when needed
        assert "val_" in line
    # The line of a finished epoch stays: each is followed by a newline, not overwritten.
    for k in range(1, epochs + 1):
        assert re.search(rf"epoch {k}/3: [^\r\n]*\r?\n", ANSI.sub("", out))
    # Within the epochs: the bar, steps done, samples per second and the running loss.
    running = [line for line in lines if re.match(r"epoch \d/3 \[[=>.]+\] \d+/18000 \S+ "
                                                  r"samples/s loss \d\.\d{4}", line)]
    assert len(running) >= epochs, lines


def test_own_bar_in_a_narrow_terminal():
    out = run_in_terminal(FIT_SCRIPT.format(blocked=("tqdm", "rich"), epochs=1), 30, True)
    assert "done" in out, out
    assert max(len(line) for line in screen_lines(out)) < 30
    assert "epoch 1/1: loss=" in ANSI.sub("", out)


@pytest.mark.parametrize("backend", ["tqdm", "rich"])
def test_installed_bars_fit_an_80_column_terminal(backend):
    pytest.importorskip(backend)
    blocked = ("rich",) if backend == "tqdm" else ("tqdm",)
    out = run_in_terminal(FIT_SCRIPT.format(blocked=blocked, epochs=2), 80, True)
    assert "done" in out, out
    too_long = [line for line in screen_lines(out) if len(line) > 80]
    assert not too_long, too_long


def test_not_a_terminal_gives_one_line_per_epoch():
    stream = io.StringIO()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    model = st.Sequential(st.Dense(3, 2), seed=0)
    opt = st.optim.SGD(model.parameters(), lr=0.1)
    bar = st.progress.ProgressBar(4, backend="text", stream=stream, interval=0.0)
    model.fit(X, y, loss=st.losses.CrossEntropy(), optimizer=opt, epochs=4, batch_size=8,
              validation_data=(X, y), callbacks=[bar], verbose=0)
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"epoch {k}/4" for k in range(1, 5)]
    for line, loss in zip(lines, model.history["loss"]):
        assert f"loss={loss:.4f}" in line and "val_accuracy=" in line


@pytest.mark.parametrize("width", range(8, 130, 3))
def test_every_line_shape_fits_its_width(width):
    logs = {"loss": 123.456789, "accuracy": 0.5, "val_loss": 1e6, "val_accuracy": 1.0,
            "time": 12345.6}
    assert len(epoch_line(999, 1000, logs, width)) <= width
    for steps, samples, seconds in ((0, 0, 0.0), (5, 40, 0.01), (10**6, 10**9, 3.0)):
        line = status_line(999, 1000, steps, 10**6, samples, 0.123456, seconds, width)
        assert len(line) <= width
    wide = status_line(0, 5, 3, 10, 3000, 0.5, 1.0, width)
    if width >= 60:  # room for everything: the bar and every value
        assert "[" in wide and "3/10" in wide and "3.0k samples/s" in wide
        assert "loss 0.5000" in wide


def test_bad_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        st.progress.ProgressBar(3, backend="fancy")
