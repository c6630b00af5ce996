"""Study 3: depth x activation, where gradients vanish."""
from __future__ import annotations

import numpy as np

from .common import (Job, Study, describe, figure, geo_mean, group, last_mean, mean_std,
                     metric_cells, metric_name, pm, save_figure, say, sci, seed_list, table,
                     train_run)


# The initialization usually paired with each activation: He for the ReLU family, Glorot
# for the saturating ones.
RECOMMENDED_INIT = {"relu": "he_normal", "gelu": "he_normal", "silu": "he_normal",
                    "leaky_relu": "he_normal", "elu": "he_normal", "sigmoid": "glorot_uniform",
                    "tanh": "glorot_uniform", "softplus": "glorot_uniform"}
STUDIED_ACTIVATIONS = ("sigmoid", "tanh", "relu", "gelu", "silu")  # the default


def depth_activation(data, seeds=3, depths=(1, 2, 3, 4, 5, 6, 7, 8),
                     activations=STUDIED_ACTIVATIONS,
                     inits=("torch_default", "recommended"), width=64, epochs=15,
                     batch_size=64, opt="sgd", lr=0.1, verbose=False) -> dict:
    """Networks of 1..8 hidden layers of `width` units with each activation, trained with
    plain SGD (whose steps are proportional to the gradient, so a vanishing gradient shows).
    inits: initializer names, or "recommended" (He for ReLU/GELU/SiLU, Glorot for
    sigmoid/tanh: RECOMMENDED_INIT). Per run: test metric, per-Dense-layer gradient norms at
    initialization (256 training rows) and per epoch (fit's "grad_norm"), update-to-weight
    ratios, dead/saturated units."""
    runs, nets = [], []
    for init_spec in inits:
        for act in activations:
            init = RECOMMENDED_INIT[act] if init_spec == "recommended" else init_spec
            net = f"{act} ({init})"
            nets.append(net)
            for depth in depths:
                for seed in seed_list(seeds):
                    runs.append(_depth_run(data, act, init, net, depth, width, opt, lr, epochs,
                                           batch_size, seed))
            say(verbose, f"  {net}: done")
    return {"study": "depth", "data": describe(data), "metric": metric_name(data),
            "depths": list(depths), "activations": list(activations), "nets": nets,
            "inits": list(inits), "width": width, "epochs": epochs, "batch_size": batch_size,
            "optimizer": opt, "lr": lr, "runs": runs, "seeds": len(seed_list(seeds))}


def _depth_run(data, act, init, net, depth, width, opt, lr, epochs, batch_size, seed):
    r = train_run(data, hidden=(width,) * depth, activation=act, init=init, opt=opt, lr=lr,
                  epochs=epochs, batch_size=batch_size, seed=seed, diagnostics=True)
    h = r["history"]
    return {"net": net, "activation": act, "init": init, "depth": depth, "seed": seed,
            "status": r["status"], "test_metric": r["test_metric"],
            "train_metric": r["train_metric"], "init_grad_norm": r["init_grad_norm"],
            "epoch_grad_norm": h["grad_norm"],
            "update_ratio": (h.get("update_ratio") or [None])[-1],
            "dead": last_mean(h.get("dead_fraction")),
            "saturated": last_mean(h.get("saturated_fraction")),
            "vanishing": any(k == "vanishing" for _, k in r["problems"])}


# -- the report ------------------------------------------------------------------------------
def _markdown(res) -> str:
    m = res["metric"]
    by = {k: rs for k, rs in group(res["runs"], "net", "depth")}
    cols = ["activation (init)"] + [f"{d} hidden" for d in res["depths"]]
    acc = [[n] + [metric_cells(by[(n, d)], "test_metric", m) for d in res["depths"]]
           for n in res["nets"]]
    ratio = [[n] + [sci(geo_mean([r["init_grad_norm"][0] / r["init_grad_norm"][-1]
                                  for r in by[(n, d)]])) for d in res["depths"]]
             for n in res["nets"]]
    trained = [[n] + [sci(geo_mean([r["epoch_grad_norm"][-1][0] /
                                    r["epoch_grad_norm"][-1][-1] for r in by[(n, d)]
                                    if r["epoch_grad_norm"]])) for d in res["depths"]]
               for n in res["nets"]]
    deepest = res["depths"][-1]
    units = []
    for n in res["nets"]:
        rs = by[(n, deepest)]
        warned = sum(r["vanishing"] for r in rs)
        dead = pm([r["dead"] for r in rs], 1, 100, " %") if rs[0]["dead"] is not None else "–"
        sat = pm([r["saturated"] for r in rs], 1, 100, " %") \
            if rs[0]["saturated"] is not None else "–"
        first = geo_mean([r["update_ratio"][0] for r in rs if r["update_ratio"]])
        units.append([n, sci(first), dead, sat, f"{warned}/{len(rs)}"])
    inits = ", ".join("the activation's usual initialization (He for the ReLU family, Glorot "
                      "for sigmoid/tanh)" if i == "recommended" else i for i in res["inits"])
    return (f"Setup: {res['data']}. 1 to {deepest} hidden layers of {res['width']} units; "
            f"initialization: {inits}; plain SGD (lr {res['lr']}), {res['epochs']} epochs, "
            f"mini-batches of {res['batch_size']}. {res['seeds']} seeds.\n\n"
            f"Test {m}:\n\n" + table(cols, acc) +
            "\n\nGradient norm of the first Dense layer divided by the last one's, at "
            "initialization (256 training rows; geometric mean over seeds). Below 1e-3 (the "
            "diagnostics' warning threshold) the first layers barely move under SGD:\n\n"
            + table(cols, ratio) +
            "\n\nThe same ratio during the last epoch of training (fit's per-epoch mean "
            "gradient norms):\n\n" + table(cols, trained) +
            f"\n\nThe {deepest}-hidden-layer networks in their last epoch: the first layer's "
            "update-to-weight ratio ‖ΔW‖ / ‖W‖ over the epoch, dead ReLU units and "
            "saturated sigmoid/tanh values after training (256 training rows), and runs where "
            "the diagnostics flagged vanishing gradients:\n\n"
            + table(["activation (init)", "first-layer update ratio", "dead ReLU units",
                     "saturated values", "vanishing flagged"], units))


def _plot(res, out) -> list:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    files = []
    by = {k: rs for k, rs in group(res["runs"], "net", "depth")}
    deepest = res["depths"][-1]
    inits = res["inits"]
    fig = Figure(figsize=(15, 4.3 * len(inits)), layout="constrained")
    grid = fig.subplots(len(inits), 3, squeeze=False)
    for row, spec in enumerate(inits):
        ax1, ax2, ax3 = grid[row]
        for k, a in enumerate(res["activations"]):
            init = RECOMMENDED_INIT[a] if spec == "recommended" else spec
            n = f"{a} ({init})"
            rs = by[(n, deepest)]
            label = a if spec != "recommended" else n
            g0 = np.exp(np.mean(np.log(np.maximum([r["init_grad_norm"] for r in rs], 1e-30)),
                                axis=0))
            layers = np.arange(1, len(g0) + 1)
            ax1.plot(layers, g0, marker="o", ms=3, label=label, color=f"C{k}")
            last = [r["epoch_grad_norm"][-1] for r in rs if r["epoch_grad_norm"]]
            if last:
                ax2.plot(layers, np.exp(np.mean(np.log(np.maximum(last, 1e-30)), axis=0)),
                         marker="o", ms=3, label=label, color=f"C{k}")
            ratio = [geo_mean([r["init_grad_norm"][0] / r["init_grad_norm"][-1]
                               for r in by[(n, d)]]) for d in res["depths"]]
            ax3.plot(res["depths"], ratio, marker="o", ms=3, label=label, color=f"C{k}")
        which = "usual init per activation" if spec == "recommended" else f"init {spec}"
        ax1.set_title(f"{which}: at initialization, {deepest} hidden layers", fontsize=10)
        ax2.set_title(f"{which}: last training epoch, {deepest} hidden layers", fontsize=10)
        ax3.set_title(f"{which}: first / last layer, at initialization", fontsize=10)
        for ax in (ax1, ax2):
            ax.set_xlabel("Dense layer (1 = input side)")
            ax.set_ylabel("gradient norm")
        ax3.axhline(1e-3, color="grey", ls="--", lw=1, label="warning threshold")
        ax3.set_xlabel("hidden layers")
        ax3.set_ylabel("first / last gradient norm")
        for ax in (ax1, ax2, ax3):
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        ax1.legend(fontsize=8)
        ax3.legend(fontsize=8)
    fig.suptitle("Vanishing gradients: per-layer gradient norms by activation "
                 f"(plain SGD, lr {res['lr']}; geometric mean over seeds)")
    files.append(save_figure(fig, out, "depth_gradients.png"))

    fig, axes = figure(len(inits), 5.5, 4.2)
    for ax, spec in zip(axes, inits):
        for k, a in enumerate(res["activations"]):
            init = RECOMMENDED_INIT[a] if spec == "recommended" else spec
            n = f"{a} ({init})"
            stats = [mean_std([r["test_metric"] for r in by[(n, d)]]) for d in res["depths"]]
            ax.errorbar(res["depths"], [s[0] for s in stats], yerr=[s[1] for s in stats],
                        marker="o", ms=4, capsize=2, label=n if spec == "recommended" else a,
                        color=f"C{k}")
        ax.set_xlabel("hidden layers")
        ax.set_ylabel(f"test {res['metric']}")
        ax.set_title("usual init per activation" if spec == "recommended" else f"init {spec}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Depth x activation: test {res['metric']} after {res['epochs']} epochs of "
                 "plain SGD")
    files.append(save_figure(fig, out, "depth_accuracy.png"))
    return files


DEPTH_STUDY = Study(
    key="depth", title="3. Depth x activation: vanishing gradients", run=depth_activation,
    markdown=_markdown, plot=_plot,
    jobs=(Job("depth", "digits", {},
              {"depths": (1, 4, 8), "activations": ("sigmoid", "tanh", "relu"), "epochs": 4,
               "width": 32}),))
