"""Training checkpoints: everything fit() needs to continue a run bit for bit.

A checkpoint is a steepest archive (see steepest.archive) of format "steepest.checkpoint": the
model's architecture, parameters and buffers (BatchNorm's running statistics, ...), the
optimizer's hyper-parameters, step count and state
buffers, the network's random-generator state (shuffling and dropout), the number of finished
epochs, the history so far, the callbacks' state, and a fingerprint of the run (architecture,
optimizer, loss, batch size, data) that decides whether a later fit() may resume from it.

Callbacks on resume: those that steer training (callbacks.steers_training: early stopping,
schedules, custom callbacks with state) must be the same, in the same order, as in the
checkpoint's run. Every callback of this run whose type the checkpoint holds gets that state
back (the k-th of a type the k-th saved one); an observer new in this run starts fresh, and
the state of one dropped since is ignored.
"""
from __future__ import annotations

import os
import zlib

import numpy as np

from ._checks import row_chunks
from .archive import (FORMAT_VERSION, check_writable, declared_dtype, read_archive,
                      remove_stale_temporaries, write_archive)
from .callbacks import steers_training
from .data import Shards

CHECKPOINT_FORMAT = "steepest.checkpoint"


def prepare(path) -> str:
    """path (str) once its folder is known to be writable (or an OSError naming it, before any
    training), with the temporaries of a checkpoint write killed in an earlier run removed."""
    path = os.fspath(path)
    check_writable(path, "checkpoint")
    remove_stale_temporaries(path)
    return path


def fingerprint(model, optimizer, loss, X, y, batch_size, shuffle, clip,
                sample_weight=None) -> dict:
    """What must match for a checkpoint to belong to this run (the learning rate may differ:
    schedules change it)."""
    hyper = {k: v for k, v in optimizer.hyperparameters().items() if k != "lr"}
    x_shape, x_crc = _digest(X, lambda rows: np.ascontiguousarray(rows, model.dtype))
    y_shape, y_crc = _digest(y, lambda rows: loss.targets(rows, len(rows), model.out_features,
                                                          model.dtype))
    run = {"layers": model.config()["layers"], "dtype": model.dtype.name,
           "optimizer": type(optimizer).__name__, "hyperparameters": _jsonable(hyper),
           "loss": loss.config(), "batch_size": batch_size, "shuffle": bool(shuffle),
           "clip_grad_norm": clip, "data": [x_shape, y_shape, x_crc, y_crc]}
    if sample_weight is not None:  # fit's row weights (sample and class weights)
        run["sample_weight"] = _digest(sample_weight, lambda rows: rows)[1]
    return run


def _digest(a, convert) -> tuple:
    """(shape, CRC-32) of data as the model reads it (convert: a chunk of rows in the model's
    types), one chunk at a time: every byte is read once and none is held beyond its chunk,
    and an array in memory and the same data read in place (a memory map, shards, another
    stored dtype) have the same digest, so a run may resume from either."""
    crc, shape = 0, list(a.shape)
    pieces = a.chunks() if isinstance(a, Shards) else ((0, rows, "") for rows in row_chunks(a))
    for _, rows, _ in pieces:
        rows = np.ascontiguousarray(convert(rows))
        crc = zlib.crc32(memoryview(rows).cast("B"), crc)
        shape = [len(a)] + list(rows.shape[1:])
    return shape, crc


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def save(path, model, optimizer, callbacks, epoch: int, history: dict, run: dict,
         finished: bool) -> None:
    """Writes the checkpoint atomically."""
    arrays = model.state_dict()
    opt = optimizer.state_dict()
    for name, buf in opt["state"].items():
        arrays[f"optimizer.{name}"] = buf
    callback_states = []
    for i, cb in enumerate(callbacks):
        state = {}
        for key, value in cb.state_dict().items():
            if isinstance(value, np.ndarray):
                arrays[f"callbacks.{i}.{key}"] = value
                state[key] = {"array": f"callbacks.{i}.{key}"}
            else:
                state[key] = value
        callback_states.append({"type": type(cb).__name__, "steers": steers_training(cb),
                                "state": state})
    header = {
        "format": CHECKPOINT_FORMAT, "version": FORMAT_VERSION, **model.config(), "run": run,
        "epoch": epoch, "finished": finished, "history": history,
        "rng_state": [str(w) for w in model.rng_state],
        # The hyper-parameters schedules change (lr, momentum, betas): their current values.
        "optimizer": {"type": opt["type"], "steps": opt["steps"],
                      **{k: opt["hyperparameters"][k] for k in optimizer.scheduled}},
        "callbacks": callback_states,
        "arrays": {k: [list(np.shape(v)), np.asarray(v).dtype.str] for k, v in arrays.items()},
    }
    write_archive(path, header, arrays)


def load(path, model, optimizer, callbacks, run: dict) -> dict:
    """Restores a checkpoint of this run into model, optimizer and callbacks; returns its
    header (epoch, finished, history). Raises ValueError for a file of another run."""

    def shapes(header):
        declared = header.get("arrays")
        if not isinstance(declared, dict):
            raise ValueError(f"{path}: checkpoint header lists no arrays")
        if header.get("run") != run:
            raise ValueError(_mismatch(path, header.get("run"), run))
        wanted = {name: (v.shape, v.dtype) for name, v in model.state_dict().items()}
        for name, buf in optimizer.state_buffers().items():
            wanted[f"optimizer.{name}"] = (buf.shape, model.dtype)
        for name, spec in declared.items():
            if name.startswith("callbacks."):
                try:
                    wanted[name] = (tuple(int(d) for d in spec[0]), declared_dtype(spec[1]))
                except (TypeError, ValueError, IndexError):
                    raise ValueError(f"{path}: bad array declaration {name!r}") from None
        return wanted

    header, arrays = read_archive(path, CHECKPOINT_FORMAT, shapes)
    try:
        epoch, finished, history = int(header["epoch"]), bool(header["finished"]), \
            header["history"]
        rng = [int(w) for w in header["rng_state"]]
        if len(rng) != 4 or not all(0 <= w < 2**64 for w in rng):
            raise ValueError(f"the random generator's state is not 4 words of 64 bits: {rng}")
        opt = header["optimizer"]
        states = header["callbacks"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: incomplete checkpoint header ({e})") from None
    if not (isinstance(states, list) and all(
            isinstance(s, dict) and isinstance(s.get("state"), dict) for s in states)):
        raise ValueError(f"{path}: bad callback states in the checkpoint header")
    steering = [s.get("type") for s in states if s.get("steers", True)]
    now = [type(cb).__name__ for cb in callbacks if steers_training(cb)]
    if steering != now:
        raise ValueError(f"{path}: the checkpoint's run had the callbacks {steering} steering "
                         f"training (early stopping, schedules, ...), this run has {now}; they "
                         "must be the same to resume (loggers may differ)")
    saved = {}  # type name -> its saved states, in order
    for s in states:
        saved.setdefault(s.get("type"), []).append(s["state"])
    for cb in callbacks:
        queue = saved.get(type(cb).__name__)
        if not queue:
            continue  # an observer new in this run
        try:
            cb.load_state_dict({k: arrays[v["array"]] if isinstance(v, dict) and "array" in v
                                else v for k, v in queue.pop(0).items()})
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: bad state for callback {type(cb).__name__} ({e!r})") \
                from None
    model.load_state_dict({name: arrays[name] for name in model.state_dict()})
    optimizer.load_state_dict({
        "type": opt["type"], "steps": opt["steps"],
        "hyperparameters": {k: opt[k] for k in optimizer.scheduled if k in opt},
        "state": {k[len("optimizer."):]: v for k, v in arrays.items()
                  if k.startswith("optimizer.")}})
    model.rng_state = rng
    return {"epoch": epoch, "finished": finished, "history": history}


def _mismatch(path, found, expected) -> str:
    if not isinstance(found, dict):
        return f"{path} is not a checkpoint of a fit() run"
    keys = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
    return (f"{path} holds a checkpoint of a different run (it differs in {', '.join(keys)}); "
            "delete it or pass another checkpoint path")
