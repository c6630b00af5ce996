"""Study 1: batch vs mini-batch vs stochastic gradient descent."""
from __future__ import annotations

import math
import re

import numpy as np

from .common import (Job, Study, classify, describe, figure, group, hidden_text, mean_std,
                     metric_cells, metric_name, pm, save_figure, say, seed_list, table, train_run)


def _memory_probe():
    """(start, stop): stop() returns (peak bytes above start, what was measured)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak resident set size (Linux)

        def rss(key):
            with open("/proc/self/status") as f:
                return int(re.search(key + r":\s+(\d+)", f.read()).group(1)) * 1024

        base = rss("VmRSS")
        return lambda: (rss("VmHWM") - base, "peak resident memory above the start")
    except OSError:
        import tracemalloc

        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]

        def stop():
            peak = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
            return peak, "peak Python/numpy allocations (tracemalloc)"
        return stop


def batch_modes(data, seeds=3, epochs=30, hidden=(128,), activation="relu",
                lrs=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0), minibatch=32, target=None,
                verbose=False) -> dict:
    """Batch (all rows per update) vs mini-batch vs stochastic (one row per update) gradient
    descent with plain SGD, the same number of epochs for each. Each mode's learning rate is
    the one of `lrs` with the lowest mean training loss over the epochs on seed 0 (fast and
    stable; the other seeds then train at that rate). target: the training loss to reach
    (default: 0.1 for classification, 0.5 for regression); "time to target" is the training
    time until the first epoch whose full training-set loss is at or below it."""
    modes = [("batch", None), (f"mini-batch ({minibatch})", minibatch), ("stochastic (1)", 1)]
    if target is None:
        target = 0.1 if classify(data) else 0.5
    n = len(data["X_train"])
    chosen, tuning, runs = {}, [], []
    for mode, bs in modes:
        best = None
        for lr in lrs:
            r = train_run(data, hidden=hidden, activation=activation, opt="sgd", lr=lr,
                          epochs=epochs, batch_size=bs, seed=0)
            score = float(np.mean(r["history"]["loss"])) if r["history"]["loss"] else math.inf
            ok = r["status"] == "ok" and np.isfinite(score)
            tuning.append({"mode": mode, "lr": lr, "status": r["status"],
                           "mean_loss": score if ok else None})
            if ok and (best is None or score < best[1]):
                best = (lr, score)
        chosen[mode] = best[0] if best else min(lrs)
        say(verbose, f"  {mode}: learning rate {chosen[mode]}")
        for seed in seed_list(seeds):
            stop = _memory_probe()
            r = train_run(data, hidden=hidden, activation=activation, opt="sgd",
                          lr=chosen[mode], epochs=epochs, batch_size=bs, seed=seed,
                          train_loss=True)
            peak, measured = stop()
            h = r["history"]
            elapsed = np.cumsum(h["time"])
            hit = [i for i, v in enumerate(h.get("train_loss_full", [])) if v <= target]
            runs.append({"mode": mode, "batch_size": bs or n, "lr": chosen[mode], "seed": seed,
                         "status": r["status"], "updates_per_epoch": math.ceil(n / (bs or n)),
                         "time_per_epoch": float(np.mean(h["time"])),
                         "epochs_to_target": hit[0] + 1 if hit else None,
                         "time_to_target": float(elapsed[hit[0]]) if hit else None,
                         "train_metric": r["train_metric"], "test_metric": r["test_metric"],
                         "train_loss": r["train_loss"], "peak_memory": peak,
                         "memory_measured": measured,
                         "curve": [r["initial_train_loss"]] + h.get("train_loss_full", []),
                         "curve_time": [0.0] + [float(t) for t in elapsed]})
    return {"study": "batch", "data": describe(data), "metric": metric_name(data),
            "epochs": epochs, "hidden": list(hidden), "activation": activation,
            "target": target, "lrs": list(lrs), "chosen_lr": chosen, "tuning": tuning,
            "runs": runs, "seeds": len(seed_list(seeds))}


# -- the report ------------------------------------------------------------------------------
def _markdown(res) -> str:
    m = res["metric"]
    rows = []
    for (mode,), rs in group(res["runs"], "mode"):
        reached = [r for r in rs if r["time_to_target"] is not None]
        rows.append([mode, rs[0]["batch_size"], rs[0]["lr"], rs[0]["updates_per_epoch"],
                     pm([r["time_per_epoch"] * 1e3 for r in rs], 1),
                     pm([r["epochs_to_target"] for r in rs], 1) if reached else "not reached",
                     pm([r["time_to_target"] for r in rs], 3) if reached else "not reached",
                     metric_cells(rs, "train_metric", m), metric_cells(rs, "test_metric", m),
                     pm([r["peak_memory"] / 2**20 for r in rs], 2)])
    cols = ["mode", "batch size", "lr", "updates / epoch", "ms / epoch", "epochs to target",
            "s to target", f"train {m}", f"test {m}", "peak memory (MiB)"]
    measured = res["runs"][0]["memory_measured"] if res["runs"] else ""
    fastest = [(mean_std([r["time_to_target"] for r in rs])[0], mode)
               for (mode,), rs in group(res["runs"], "mode")
               if all(r["time_to_target"] is not None for r in rs)]
    reading = (f"\n\nFirst to the target in training time (every seed): {min(fastest)[1]}."
               if fastest else "\n\nNo mode reached the target with every seed.")
    return (f"Setup: {res['data']}. {hidden_text(res['hidden'], res['activation'])}, "
            f"plain SGD, {res['epochs']} epochs for every mode. Each mode's learning "
            "rate is the best (lowest mean training loss over the epochs, seed 0) of "
            f"{res['lrs']}. Target: "
            f"training loss ≤ {res['target']} on the whole training set, checked after each "
            f"epoch; times are training time only (evaluation excluded). Memory: {measured} "
            f"of one training run. {res['seeds']} seeds (initial weights and shuffling).\n\n"
            + table(cols, rows) + reading)


def _plot(res, out) -> list:
    files = []
    fig, (ax1, ax2) = figure(2)
    for (mode,), rs in group(res["runs"], "mode"):
        r = rs[0]
        if r["curve"]:
            ep = np.arange(len(r["curve"]))
            ax1.plot(ep, r["curve"], label=f"{mode}, lr {r['lr']}")
            ax2.plot(r["curve_time"], r["curve"], label=mode)
    for ax, xl in ((ax1, "epoch"), (ax2, "training time (s)")):
        ax.axhline(res["target"], color="grey", ls="--", lw=1, label="target")
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("training loss (whole training set)")
        ax.grid(alpha=0.3)
    ax1.set_title("loss per epoch (seed 0)")
    ax2.set_title("loss against wall time (seed 0)")
    ax1.legend(fontsize=8)
    fig.suptitle(f"Batch vs mini-batch vs stochastic GD: {res['data'].split(' (')[0]}")
    files.append(save_figure(fig, out, f"batch_{_slug(res)}.png"))
    return files


def _slug(res):
    return re.sub(r"\W+", "_", res["data"].split(" (")[0]).strip("_")


BATCH_STUDY = Study(
    key="batch", title="1. Batch vs mini-batch vs stochastic gradient descent", run=batch_modes,
    markdown=_markdown, plot=_plot,
    jobs=(Job("batch", "digits", {"epochs": 30}, {"epochs": 8, "lrs": (0.01, 0.1, 1.0)}),
          Job("batch_regression", "diabetes", {"epochs": 30},
              {"epochs": 8, "lrs": (0.01, 0.1, 1.0)}, heading=" (regression)")))
