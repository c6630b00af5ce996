"""Study 2: a learning-rate sweep per optimizer."""
from __future__ import annotations

import numpy as np

from .common import (Job, Study, classify, describe, figure, group, hidden_text, mean_std,
                     metric_name, pm, save_figure, say, seed_list, status_cell, table, train_run)


def learning_rate(data, seeds=3, optimizers=("sgd", "momentum", "adam", "rmsprop"),
                  lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0),
                  epochs=15, batch_size=64, hidden=(128,), activation="relu", target=None,
                  verbose=False) -> dict:
    """A learning-rate sweep per optimizer. Per (optimizer, rate, seed): final test metric,
    epochs until the test metric first reaches `target` (default accuracy 0.95, or MSE 0.6),
    and whether training diverged (a non-finite loss or gradient; recorded, not raised)."""
    if target is None:
        target = 0.95 if classify(data) else 0.6
    runs = []
    for name in optimizers:
        for lr in lrs:
            for seed in seed_list(seeds):
                r = train_run(data, hidden=hidden, activation=activation, opt=name, lr=lr,
                              epochs=epochs, batch_size=batch_size, seed=seed)
                curve = r["history"].get("val_accuracy" if classify(data) else "val_loss", [])
                hit = [i for i, v in enumerate(curve)
                       if (v >= target if classify(data) else v <= target)]
                runs.append({"optimizer": name, "lr": lr, "seed": seed, "status": r["status"],
                             "diverged_epoch": r["diverged_epoch"],
                             "test_metric": r["test_metric"],
                             "train_metric": r["train_metric"],
                             "epochs_to_target": hit[0] + 1 if hit else None,
                             "final_loss": r["train_loss"]})
        say(verbose, f"  {name}: done")
    return {"study": "learning_rate", "data": describe(data), "metric": metric_name(data),
            "optimizers": list(optimizers), "lrs": list(lrs), "epochs": epochs,
            "batch_size": batch_size, "hidden": list(hidden), "activation": activation,
            "target": target, "runs": runs, "seeds": len(seed_list(seeds))}


# -- the report ------------------------------------------------------------------------------
def _markdown(res) -> str:
    m = res["metric"]
    by = {k: rs for k, rs in group(res["runs"], "optimizer", "lr")}
    cols = ["lr"] + res["optimizers"]
    acc_rows, ep_rows = [], []
    for lr in res["lrs"]:
        acc_rows.append([f"{lr:g}"] + [status_cell(by[(o, lr)], m) for o in res["optimizers"]])
        cells = []
        for o in res["optimizers"]:
            rs = by[(o, lr)]
            if all(r["status"] == "diverged" for r in rs):
                cells.append("diverged")
            elif any(r["epochs_to_target"] is not None for r in rs):
                cells.append(pm([r["epochs_to_target"] for r in rs], 1))
            else:
                cells.append("not reached")
        ep_rows.append([f"{lr:g}"] + cells)
    loss_rows = []
    for lr in res["lrs"]:
        cells = []
        for o in res["optimizers"]:
            rs = [r for r in by[(o, lr)] if r["status"] != "diverged"]
            mu, sd = mean_std([r["final_loss"] for r in rs])
            cells.append("diverged" if not rs else "–" if not np.isfinite(mu) else
                         f"{mu:.2g}" if len(rs) == 1 else f"{mu:.2g} ± {sd:.2g}")
        loss_rows.append([f"{lr:g}"] + cells)
    target = (f"test accuracy ≥ {100 * res['target']:g} %" if m == "accuracy"
              else f"test MSE ≤ {res['target']}")
    diverging = {o: [f"{lr:g}" for lr in res["lrs"]
                     if any(r["status"] == "diverged" for r in by[(o, lr)])]
                 for o in res["optimizers"]}
    div_text = "; ".join(f"{o}: {', '.join(v) if v else 'none'}" for o, v in diverging.items())
    best = []
    for o in res["optimizers"]:
        scored = [(mean_std([r["test_metric"] for r in by[(o, lr)] if r["status"] == "ok"])[0],
                   lr) for lr in res["lrs"]]
        scored = [(v if m == "accuracy" else -v, lr) for v, lr in scored if np.isfinite(v)]
        if scored:
            v, lr = max(scored)
            best.append(f"{o} {lr:g} ({100 * v:.1f} %)" if m == "accuracy"
                        else f"{o} {lr:g} (MSE {-v:.3f})")
    return (f"Setup: {res['data']}. {hidden_text(res['hidden'], res['activation'])}, "
            f"{res['epochs']} epochs, mini-batches of {res['batch_size']}; SGD, SGD with "
            f"momentum 0.9, Adam and RMSprop with their other settings at torch's defaults. "
            f"A run *diverges* when its loss or gradient becomes NaN or infinite (fit raises "
            f"TrainingDiverged; recorded here). {res['seeds']} seeds.\n\n"
            f"Final test {m} (mean ± std over the seeds that did not diverge):\n\n"
            + table(cols, acc_rows) +
            "\n\nFinal training loss on the whole training set (a rate can stay finite and "
            "keep a good accuracy while the loss blows up: the weights grow, the arg-max "
            "survives):\n\n" + table(cols, loss_rows) +
            f"\n\nEpochs until {target} (over the seeds that reached it; (k/n) = k of n "
            "seeds):\n\n" + table(cols, ep_rows) +
            f"\n\nRates with at least one diverged run: {div_text}. Best rate of the grid per "
            f"optimizer (mean test {m}): {', '.join(best)}.")


def _plot(res, out) -> list:
    fig, axes = figure(1, 7, 4.5)
    ax = axes[0]
    by = {k: rs for k, rs in group(res["runs"], "optimizer", "lr")}
    for o in res["optimizers"]:
        xs, ys, es, dx = [], [], [], []
        for lr in res["lrs"]:
            rs = [r for r in by[(o, lr)] if r["status"] == "ok"]
            if len(rs) < len(by[(o, lr)]):
                dx.append(lr)
            if rs:
                mu, sd = mean_std([r["test_metric"] for r in rs])
                xs.append(lr), ys.append(mu), es.append(sd)
        line = ax.errorbar(xs, ys, yerr=es, marker="o", ms=4, capsize=2, label=o)
        if dx:
            k = res["optimizers"].index(o)
            y0 = -0.04 * k if res["metric"] == "accuracy" else max(ys or [1]) * (1 + 0.05 * k)
            ax.scatter(dx, [y0] * len(dx), marker="x", s=50, color=line[0].get_color())
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"test {res['metric']}")
    ax.set_title(f"Learning-rate sweep ({res['epochs']} epochs); x: diverged")
    ax.grid(alpha=0.3)
    ax.legend()
    return [save_figure(fig, out, "learning_rate.png")]


LEARNING_RATE_STUDY = Study(
    key="learning_rate", title="2. Learning rate, per optimizer", run=learning_rate,
    markdown=_markdown, plot=_plot,
    jobs=(Job("learning_rate", "digits", {},
              {"lrs": (1e-3, 0.1, 10.0), "epochs": 4,
               "optimizers": ("sgd", "momentum", "adam", "rmsprop")}),))
