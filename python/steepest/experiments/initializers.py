"""Study 5: initialization of a deep network."""
from __future__ import annotations

import numpy as np

from .common import (Job, Study, classify, describe, geo_mean, group, last_mean, metric_name, pm,
                     save_figure, say, sci, seed_list, status_cell, table, train_run)

STUDIED_INITS = ("zeros", "normal", "torch_default", "glorot_uniform", "he_normal")  # default


def initialization(data, seeds=3, inits=STUDIED_INITS, activations=("tanh", "relu"), depth=6,
                   width=64, epochs=20, batch_size=64, opt="momentum", lr=0.01,
                   verbose=False) -> dict:
    """Zeros vs small random ("normal": N(0, 0.01^2)) vs Glorot vs He (and torch's default)
    on a deep network. Per run: test metric, the standard deviation of every hidden layer's
    output at initialization (does the signal survive the forward pass?), gradient norms
    at initialization (does it survive the backward pass?), dead ReLU units after training."""
    runs = []
    for act in activations:
        for init in inits:
            for seed in seed_list(seeds):
                r = train_run(data, hidden=(width,) * depth, activation=act, init=init,
                              opt=opt, lr=lr, epochs=epochs, batch_size=batch_size,
                              seed=seed, diagnostics=True)
                h = r["history"]
                runs.append({"activation": act, "init": init, "seed": seed,
                             "status": r["status"], "test_metric": r["test_metric"],
                             "train_metric": r["train_metric"],
                             "init_activation_std": r["init_activations"],
                             "init_grad_norm": r["init_grad_norm"],
                             "dead": last_mean(h.get("dead_fraction")),
                             "curve": h.get("val_accuracy" if classify(data) else "val_loss",
                                            [])})
        say(verbose, f"  {act}: done")
    return {"study": "init", "data": describe(data), "metric": metric_name(data),
            "inits": list(inits), "activations": list(activations), "depth": depth,
            "width": width, "epochs": epochs, "batch_size": batch_size, "optimizer": opt,
            "lr": lr, "runs": runs, "seeds": len(seed_list(seeds))}


# -- the report ------------------------------------------------------------------------------
def _markdown(res) -> str:
    m = res["metric"]
    rows = []
    for (act, init), rs in group(res["runs"], "activation", "init"):
        rows.append([act, init, status_cell(rs, m),
                     sci(geo_mean([r["init_activation_std"][-1] for r in rs])),
                     sci(geo_mean([r["init_grad_norm"][0] for r in rs])),
                     pm([r["dead"] for r in rs], 1, 100, " %") if act == "relu" else "–"])
    return (f"Setup: {res['data']}. {res['depth']} hidden layers of {res['width']} units, "
            f"SGD with momentum 0.9 (lr {res['lr']}), {res['epochs']} epochs, mini-batches of "
            f"{res['batch_size']}. \"normal\" is N(0, 0.01²) (small random); Glorot and He are "
            "scaled to the fan-in/fan-out; torch_default is torch.nn.Linear's. Signal: the "
            "standard deviation of the last hidden layer's output at initialization; gradient: "
            "the first layer's gradient norm at initialization (both on 256 training rows, "
            f"geometric mean over seeds). {res['seeds']} seeds.\n\n"
            + table(["activation", "init", f"test {m}", "signal at init (std)",
                     "first-layer gradient at init", "dead ReLU after training"], rows))


def _plot(res, out) -> list:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    acts = res["activations"]
    fig = Figure(figsize=(5.2 * len(acts), 7.6), layout="constrained")
    axes = fig.subplots(2, len(acts), squeeze=False)
    by = {k: rs for k, rs in group(res["runs"], "activation", "init")}
    for col, a in enumerate(acts):
        for row, key, ylabel in ((0, "init_activation_std", "std of the hidden layer's output"),
                                 (1, "init_grad_norm", "gradient norm")):
            ax = axes[row][col]
            for k, init in enumerate(res["inits"]):
                values = np.asarray([r[key] for r in by[(a, init)]], dtype=np.float64)
                y = np.exp(np.mean(np.log(np.where(values > 0, values, np.nan)), axis=0))
                label = init
                if np.all(values == 0):
                    label += " (all exactly 0: off the log scale)"
                elif np.any(values == 0):
                    label += " (only the nonzero values drawn)"
                ax.plot(np.arange(1, len(y) + 1), y, marker="o", ms=3, label=label,
                        color=f"C{k}")
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("hidden layer" if row == 0 else "Dense layer (1 = input side)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{a}: {'forward signal' if row == 0 else 'gradient'} at "
                         "initialization")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"Initialization: {res['depth']} hidden layers of {res['width']} units, "
                 "256 training rows (geometric mean over seeds)")
    return [save_figure(fig, out, "init_signal.png")]


INIT_STUDY = Study(
    key="init", title="5. Initialization on a deep network", run=initialization,
    markdown=_markdown, plot=_plot,
    jobs=(Job("init", "digits", {},
              {"inits": ("zeros", "normal", "he_normal"), "activations": ("relu",),
               "epochs": 4, "depth": 4, "width": 32}),))
