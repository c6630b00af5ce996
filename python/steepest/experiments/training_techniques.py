"""Study 4: momentum, weight decay, dropout and adaptive optimizers on one network."""
from __future__ import annotations

import numpy as np

from .common import (Job, Study, classify, describe, figure, group, hidden_text, mean_std,
                     metric_cells, metric_name, pm, save_figure, say, seed_list, status_cell,
                     table, train_run)


TECHNIQUES = (
    # name, optimizer, lr, weight decay, dropout
    ("SGD", "sgd", 0.05, 0.0, 0.0),
    ("SGD + momentum 0.9", "momentum", 0.01, 0.0, 0.0),
    ("SGD + Nesterov 0.9", "nesterov", 0.01, 0.0, 0.0),
    ("momentum + weight decay 1e-2", "momentum", 0.01, 1e-2, 0.0),
    ("momentum + dropout 0.2", "momentum", 0.01, 0.0, 0.2),
    ("momentum + dropout 0.5", "momentum", 0.01, 0.0, 0.5),
    ("Adam", "adam", 1e-3, 0.0, 0.0),
    ("AdamW (decay 1e-2)", "adamw", 1e-3, 1e-2, 0.0),
    ("RMSprop", "rmsprop", 1e-3, 0.0, 0.0),
    ("Adagrad", "adagrad", 1e-2, 0.0, 0.0),
)


def techniques(data, seeds=3, configs=TECHNIQUES, hidden=(256, 256), activation="relu",
               epochs=30, batch_size=32, verbose=False) -> dict:
    """Optimizers and regularizers on the same network and data: train and test metric, the
    train-test gap, and training time. configs: (name, optimizer, lr, weight_decay,
    dropout) tuples."""
    runs = []
    for name, opt, lr, wd, dropout in configs:
        for seed in seed_list(seeds):
            r = train_run(data, hidden=hidden, activation=activation, opt=opt, lr=lr,
                          weight_decay=wd, dropout=dropout, epochs=epochs,
                          batch_size=batch_size, seed=seed)
            runs.append({"technique": name, "optimizer": opt, "lr": lr, "weight_decay": wd,
                         "dropout": dropout, "seed": seed, "status": r["status"],
                         "train_metric": r["train_metric"], "test_metric": r["test_metric"],
                         "time": r["train_time"], "weight_norm": r["weight_norm"],
                         "curve": r["history"].get("val_accuracy" if classify(data)
                                                   else "val_loss", []),
                         "loss_curve": r["history"]["loss"]})
        say(verbose, f"  {name}: done")
    return {"study": "techniques", "data": describe(data), "metric": metric_name(data),
            "hidden": list(hidden), "activation": activation, "epochs": epochs,
            "batch_size": batch_size, "runs": runs, "seeds": len(seed_list(seeds))}


# -- the report ------------------------------------------------------------------------------
def _markdown(res) -> str:
    m = res["metric"]
    rows = []
    for (name,), rs in group(res["runs"], "technique"):
        gap = [r["train_metric"] - r["test_metric"] if r["status"] == "ok" else None
               for r in rs]
        rows.append([name, rs[0]["lr"], metric_cells(rs, "train_metric", m),
                     status_cell(rs, m),
                     pm(gap, 1, 100, " pp") if m == "accuracy" else pm(gap, 3),
                     pm([r["weight_norm"] for r in rs], 1), pm([r["time"] for r in rs], 2)])
    return (f"Setup: {res['data']}. {hidden_text(res['hidden'], res['activation'])}, "
            f"{res['epochs']} epochs, mini-batches of {res['batch_size']}. Learning "
            "rates: 0.05 for plain SGD, 0.01 with momentum (its steps are about 10x larger), "
            "torch's defaults for Adam/AdamW/RMSprop (1e-3) and Adagrad (1e-2). The gap is "
            f"train minus test {m} at the end (pp: percentage points); ‖W‖ is the norm of all "
            "the weight matrices together at the end (what weight decay shrinks); time is training "
            "time. "
            f"{res['seeds']} seeds.\n\n"
            + table(["technique", "lr", f"train {m}", f"test {m}", "train - test", "‖W‖",
                     "time (s)"], rows))


def _plot(res, out) -> list:
    fig, (ax1, ax2) = figure(2, 6.0, 4.6)
    groups = group(res["runs"], "technique")
    names = [name for (name,), _ in groups]
    stats = [mean_std([r["test_metric"] for r in rs if r["status"] == "ok"]) for _, rs in groups]
    ypos = np.arange(len(names))[::-1]
    ax1.barh(ypos, [s[0] for s in stats], xerr=[s[1] for s in stats], capsize=3,
             color=[f"C{k}" for k in range(len(names))])
    ax1.set_yticks(ypos, names, fontsize=8)
    finite = [s[0] for s in stats if np.isfinite(s[0])]
    if finite and res["metric"] == "accuracy":
        ax1.set_xlim(max(0.0, min(finite) - 0.03), min(1.0, max(finite) + 0.015))
    ax1.set_xlabel(f"test {res['metric']} after {res['epochs']} epochs (mean ± std)")
    ax1.grid(alpha=0.3, axis="x")
    ax1.set_title("Final test " + res["metric"])
    for k, (_, rs) in enumerate(groups):
        curves = [r["loss_curve"] for r in rs if len(r["loss_curve"]) == res["epochs"]]
        if curves:
            ax2.plot(np.arange(1, res["epochs"] + 1), np.mean(curves, axis=0),
                     color=f"C{k}", ls=("-", "--", ":")[k // 4 % 3], label=names[k])
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("training loss (mean over the epoch's batches)")
    ax2.set_title("Training loss (mean over seeds)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7, ncol=2)
    fig.suptitle("Techniques on the same network and data")
    return [save_figure(fig, out, "techniques.png")]


TECHNIQUES_STUDY = Study(
    key="techniques",
    title="4. Techniques: momentum, weight decay, dropout, adaptive optimizers",
    run=techniques, markdown=_markdown, plot=_plot,
    jobs=(Job("techniques", "digits", {},
              {"configs": TECHNIQUES[:2] + TECHNIQUES[5:7], "epochs": 4, "hidden": (64,)}),))
