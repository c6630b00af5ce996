"""fit's progress display (verbose=1): tqdm or rich when installed, else steepest's own bar.

steepest's own bar fits the terminal: every line it draws is narrower than the terminal (the
width is read again at each redraw, so a resized window is followed), so nothing wraps and
piles up. Within an epoch it is redrawn in place at most every `interval` seconds (steps done,
samples per second, running loss); each finished epoch leaves one line. When the output is not
a terminal it writes only those lines, one per epoch.
"""
from __future__ import annotations

import importlib
import os
import sys
import time

from .callbacks import Callback, format_logs

BACKENDS = ("auto", "tqdm", "rich", "text")


def terminal_columns(stream) -> int:
    """Columns of the terminal stream writes to: $COLUMNS when set (as shutil reads it), else
    the terminal's own width, else 80."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns if columns > 0 else 80


def is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def fit_parts(parts, width=None, sep=" ") -> str:
    """parts joined by sep, dropping parts from the end until the line is at most width
    characters (the first part alone is cut to width)."""
    line = parts[0]
    for part in parts[1:]:
        if width is not None and len(line) + len(sep) + len(part) > width:
            break
        line += sep + part
    return line if width is None else line[:width]


def epoch_line(epoch: int, epochs: int, logs: dict, width=None) -> str:
    """"epoch 3/20: loss=... accuracy=... (12 ms)", shortened to width characters if needed
    (abbreviated names first, then fewer values)."""
    head = f"epoch {epoch + 1}/{epochs}:"
    for short in (False, True):
        parts = [head, *format_logs(logs, short)]
        line = " ".join(parts)
        if width is None or len(line) <= width:
            return line
    return fit_parts(parts, width)


def _rate(per_second: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_second >= scale:
            return f"{per_second / scale:.1f}{suffix}"
    return f"{per_second:.0f}"


def status_line(epoch, epochs, steps, total, samples, loss, seconds, width) -> str:
    """The in-epoch line: "epoch 3/20 [=====>....] 120/469 85.2k samples/s loss 0.4123", at
    most width characters (the bar shrinks, then goes, then the last values)."""
    head = f"epoch {epoch + 1}/{epochs}"
    tail = [f"{steps}/{total}"]
    if samples and seconds > 0:
        tail.append(f"{_rate(samples / seconds)} samples/s")
    if loss is not None:
        tail.append(f"loss {loss:.4f}")
    room = width - len(head) - len(" ".join(tail)) - 4  # the bar between " [" and "] "
    if room >= 10:
        inner = min(room, 30)
        done = min(inner, inner * steps // max(total, 1))
        bar = "=" * done + (">" if done < inner else "") + "." * max(inner - done - 1, 0)
        head += f" [{bar}]"
    return fit_parts([head, *tail], width)


class _TextBar:
    """steepest's own bar (see the module's docstring)."""

    def __init__(self, stream, epochs: int, interval: float):
        self.stream, self.epochs, self.interval = stream, epochs, interval
        self.tty = is_terminal(stream)
        self._shown = 0  # characters of the in-place line now on screen (0: none)
        self._last = 0.0

    def begin(self, epoch, steps):
        self.epoch, self.steps, self.start = epoch, steps, time.perf_counter()
        self._last = 0.0
        self.progress(0, 0, None)

    def progress(self, steps, samples, loss):
        now = time.perf_counter()
        if not self.tty or now - self._last < self.interval:
            return
        self._last = now
        width = terminal_columns(self.stream) - 1
        self._redraw(status_line(self.epoch, self.epochs, steps, self.steps, samples, loss,
                                 now - self.start, width), width)

    def end(self, logs):
        if self.tty:
            width = terminal_columns(self.stream) - 1
            self._redraw(epoch_line(self.epoch, self.epochs, logs, width), width)
            self._shown = 0
            self._write("\n")
        else:
            self._write(epoch_line(self.epoch, self.epochs, logs) + "\n")

    def close(self):
        if self._shown:
            self._shown = 0
            self._write("\n")

    def _redraw(self, line, width):
        # Spaces clear what is left of a longer previous line, never past the width.
        pad = max(0, min(self._shown, width) - len(line))
        self._write("\r" + line + " " * pad)
        self._shown = len(line)

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()


class _TqdmBar:
    """tqdm's bar over the epochs; the running values in its postfix (tqdm fits the width)."""

    def __init__(self, stream, epochs):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=epochs, unit="epoch", file=stream, dynamic_ncols=True,
                         leave=True)
        self._last = 0.0

    def begin(self, epoch, steps):
        self.steps = steps

    def progress(self, steps, samples, loss):
        text = f"{steps}/{self.steps} steps" + (f", loss {loss:.4f}" if loss is not None else "")
        self._bar.set_postfix_str(text)

    def end(self, logs):
        self._bar.set_postfix_str(" ".join(format_logs(logs, short=True)), refresh=False)
        self._bar.update(1)

    def close(self):
        self._bar.close()


class _RichBar:
    """rich's live progress display over the epochs; a line per finished epoch above it."""

    def __init__(self, stream, epochs):
        from rich import progress as rp
        from rich.console import Console

        self._progress = rp.Progress(
            rp.TextColumn("epoch"), rp.MofNCompleteColumn(), rp.BarColumn(),
            rp.TextColumn("{task.fields[info]}"), console=Console(file=stream))
        self._task = self._progress.add_task("fit", total=epochs, info="")
        self.epochs = epochs
        self._progress.start()

    def begin(self, epoch, steps):
        self.epoch, self.steps = epoch, steps

    def progress(self, steps, samples, loss):
        text = f"{steps}/{self.steps} steps" + (f"  loss {loss:.4f}" if loss is not None else "")
        self._progress.update(self._task, info=text)

    def end(self, logs):
        console = self._progress.console
        console.print(epoch_line(self.epoch, self.epochs, logs, console.width - 1),
                      highlight=False, no_wrap=True)
        self._progress.update(self._task, advance=1, info="")

    def close(self):
        self._progress.stop()


def _installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _backend(name, stream, epochs, interval):
    """The display for backend name ("auto": tqdm, else rich, else steepest's own)."""
    for module, bar in (("tqdm", _TqdmBar), ("rich", _RichBar)):
        if name in ("auto", module):
            if _installed(module):
                return bar(stream, epochs)
            if name == module:
                raise ImportError(f"backend {module!r} needs {module}: pip install {module}")
    return _TextBar(stream, epochs, interval)


class ProgressBar(Callback):
    """fit's progress display (verbose=1) on stream (default sys.stderr).

    backend: "auto" (tqdm when installed, else rich, else steepest's own), "tqdm", "rich" or
    "text" (steepest's own: see the module's docstring). interval: the least time in seconds
    between two redraws within an epoch."""

    rank_zero_only = True

    def __init__(self, epochs: int, backend: str = "auto", stream=None, interval: float = 0.1):
        self.epochs, self.backend, self.interval = epochs, backend, interval
        self.stream = stream
        self._bar = None
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")

    def on_train_begin(self, model, optimizer):
        super().on_train_begin(model, optimizer)
        self._bar = _backend(self.backend, self.stream or sys.stderr, self.epochs,
                             self.interval)

    def on_epoch_begin(self, epoch, logs):
        self._bar.begin(epoch, logs["steps"])

    def on_epoch_progress(self, epoch, logs):
        self._bar.progress(logs["steps"], logs["samples"], logs["loss"])

    def on_epoch_end(self, epoch, logs):
        self._bar.end(logs)

    def on_train_end(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    on_train_abort = on_train_end
