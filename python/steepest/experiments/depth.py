"""Study 3: depth x activation, where gradients vanish, and what BatchNorm and LayerNorm do
to them."""
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
NORM_NAMES = {"batch": "BatchNorm", "layer": "LayerNorm"}  # build_mlp's norm -> row label


def _init_of(act, init_spec):
    return RECOMMENDED_INIT[act] if init_spec == "recommended" else init_spec


def _net_name(act, init, norm=None):
    return f"{act} ({init})" + (f" + {NORM_NAMES[norm]}" if norm else "")


def depth_activation(data, seeds=3, depths=(1, 2, 3, 4, 5, 6, 7, 8),
                     activations=STUDIED_ACTIVATIONS,
                     inits=("torch_default", "recommended"), width=64, epochs=15,
                     batch_size=64, opt="sgd", lr=0.1, normalizations=("batch", "layer"),
                     normalized_activations=("sigmoid", "relu"), verbose=False) -> dict:
    """Networks of 1..8 hidden layers of `width` units with each activation, trained with
    plain SGD (whose steps are proportional to the gradient, so a vanishing gradient shows).
    inits: initializer names, or "recommended" (He for ReLU/GELU/SiLU, Glorot for
    sigmoid/tanh: RECOMMENDED_INIT). Then the normalized nets: each of normalized_activations
    with the first of inits and each of normalizations ("batch": BatchNorm1d, "layer":
    LayerNorm) between every hidden Dense layer and its activation. Per run: test metric,
    per-Dense-layer gradient norms at initialization (256 training rows; BatchNorm on their
    statistics, as in a training step) and per epoch (fit's "grad_norm"), update-to-weight
    ratios, dead/saturated units."""
    plain = [(act, _init_of(act, spec), None) for spec in inits for act in activations]
    normalized = [(act, _init_of(act, inits[0]), norm) for norm in normalizations
                  for act in normalized_activations]
    runs, nets = [], []
    for act, init, norm in plain + normalized:
        net = _net_name(act, init, norm)
        nets.append(net)
        for depth in depths:
            for seed in seed_list(seeds):
                runs.append(_depth_run(data, act, init, norm, net, depth, width, opt, lr,
                                       epochs, batch_size, seed))
        say(verbose, f"  {net}: done")
    return {"study": "depth", "data": describe(data), "metric": metric_name(data),
            "depths": list(depths), "activations": list(activations), "nets": nets,
            "inits": list(inits), "normalizations": list(normalizations),
            "normalized_activations": list(normalized_activations), "width": width,
            "epochs": epochs, "batch_size": batch_size, "optimizer": opt, "lr": lr,
            "runs": runs, "seeds": len(seed_list(seeds))}


def _depth_run(data, act, init, norm, net, depth, width, opt, lr, epochs, batch_size, seed):
    r = train_run(data, hidden=(width,) * depth, activation=act, init=init, opt=opt, lr=lr,
                  epochs=epochs, batch_size=batch_size, seed=seed, diagnostics=True, norm=norm)
    h = r["history"]
    return {"net": net, "activation": act, "init": init, "norm": norm, "depth": depth,
            "seed": seed,
            "status": r["status"], "test_metric": r["test_metric"],
            "train_metric": r["train_metric"], "init_grad_norm": r["init_grad_norm"],
            "epoch_grad_norm": h["grad_norm"],
            "update_ratio": (h.get("update_ratio") or [None])[-1],
            "dead": last_mean(h.get("dead_fraction")),
            "saturated": last_mean(h.get("saturated_fraction")),
            "vanishing": any(k == "vanishing" for _, k in r["problems"])}


# -- the report ------------------------------------------------------------------------------
def _init_ratio(runs) -> float:
    """First / last Dense layer's gradient norm at initialization (geometric mean)."""
    return geo_mean([r["init_grad_norm"][0] / r["init_grad_norm"][-1] for r in runs])


def _layer_geo_mean(norms) -> np.ndarray:
    """Per Dense layer, the geometric mean over the runs of their per-layer gradient norms
    (norms: one vector per run; norms below 1e-30 count as 1e-30)."""
    return np.exp(np.mean(np.log(np.maximum(norms, 1e-30)), axis=0))


def _trained_ratio(runs) -> float:
    """The same ratio in the last training epoch (fit's per-epoch mean gradient norms)."""
    return geo_mean([r["epoch_grad_norm"][-1][0] / r["epoch_grad_norm"][-1][-1] for r in runs
                     if r["epoch_grad_norm"]])


def _normalized_groups(res) -> list:
    """[(activation, init, [(norm or None, net name)])]: each normalized activation's plain net
    and its normalized ones (empty for a result without normalized nets)."""
    norms = res.get("normalizations", [])
    groups = []
    for act in res.get("normalized_activations", []) if norms else []:
        init = _init_of(act, res["inits"][0])
        groups.append((act, init, [(norm, _net_name(act, init, norm))
                                   for norm in [None] + list(norms)]))
    return groups


def _normalization_markdown(res, by) -> str:
    groups = _normalized_groups(res)
    if not groups:
        return ""
    m, deepest = res["metric"], res["depths"][-1]
    rows = []
    for act, init, nets in groups:
        for norm, n in nets:
            rs = by[(n, deepest)]
            rows.append([act, NORM_NAMES.get(norm, "none"), metric_cells(rs, "test_metric", m),
                         sci(_init_ratio(rs)), sci(_trained_ratio(rs)),
                         " · ".join(sci(g) for g in _layer_geo_mean(
                             [r["init_grad_norm"] for r in rs]))])
    return (f"\n\nNormalization, the other classic cure: the {deepest}-hidden-layer networks "
            f"({_init_text(res)}) without normalization and with BatchNorm1d or LayerNorm "
            "between every hidden Dense layer and its activation (torch's defaults; the gradient "
            "at initialization with BatchNorm on the 256 rows' own statistics, as a training "
            "step normalizes). The last column: each Dense layer's gradient norm at "
            "initialization, input side first (geometric mean over seeds):\n\n"
            + table(["activation", "normalization", f"test {m}", "first / last at init",
                     "first / last, last epoch", "per-layer gradient norms at init"], rows))


def _init_text(res) -> str:
    """The initialization of the normalized nets, for the report."""
    spec = res["inits"][0]
    return ("each activation's usual initialization" if spec == "recommended"
            else f"init {spec}")


def _markdown(res) -> str:
    m = res["metric"]
    by = {k: rs for k, rs in group(res["runs"], "net", "depth")}
    cols = ["activation (init)"] + [f"{d} hidden" for d in res["depths"]]
    acc = [[n] + [metric_cells(by[(n, d)], "test_metric", m) for d in res["depths"]]
           for n in res["nets"]]
    ratio = [[n] + [sci(_init_ratio(by[(n, d)])) for d in res["depths"]] for n in res["nets"]]
    trained = [[n] + [sci(_trained_ratio(by[(n, d)])) for d in res["depths"]]
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
            f"mini-batches of {res['batch_size']}. {res['seeds']} seeds."
            + (" Rows marked + BatchNorm / + LayerNorm have that layer between every hidden "
               "Dense layer and its activation (see the last table)."
               if _normalized_groups(res) else "") + "\n\n"
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
                     "saturated values", "vanishing flagged"], units)
            + _normalization_markdown(res, by))


def _plot(res, out) -> list:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    files = []
    by = {k: rs for k, rs in group(res["runs"], "net", "depth")}
    deepest = res["depths"][-1]
    inits = res["inits"]
    # a row of panels per init, and one for normalization: (title, [(net, label, style)])
    rows = [("usual init per activation" if spec == "recommended" else f"init {spec}",
             [(_net_name(a, _init_of(a, spec)),
               _net_name(a, _init_of(a, spec)) if spec == "recommended" else a,
               {"color": f"C{k}"}) for k, a in enumerate(res["activations"])])
            for spec in inits]
    groups = _normalized_groups(res)
    if groups:
        rows.append((f"normalization ({_init_text(res)})",
                     [(n, f"{a} + {NORM_NAMES[norm]}" if norm else a,
                       {"color": f"C{k}", "ls": ("-", "--", ":")[j % 3]})
                      for k, (a, _, nets) in enumerate(groups)
                      for j, (norm, n) in enumerate(nets)]))
    fig = Figure(figsize=(15, 4.3 * len(rows)), layout="constrained")
    grid = fig.subplots(len(rows), 3, squeeze=False)
    for (which, nets), (ax1, ax2, ax3) in zip(rows, grid):
        for n, label, style in nets:
            rs = by[(n, deepest)]
            g0 = _layer_geo_mean([r["init_grad_norm"] for r in rs])
            layers = np.arange(1, len(g0) + 1)
            ax1.plot(layers, g0, marker="o", ms=3, label=label, **style)
            last = [r["epoch_grad_norm"][-1] for r in rs if r["epoch_grad_norm"]]
            if last:
                ax2.plot(layers, _layer_geo_mean(last), marker="o", ms=3, label=label, **style)
            ax3.plot(res["depths"], [_init_ratio(by[(n, d)]) for d in res["depths"]],
                     marker="o", ms=3, label=label, **style)
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
    fig.suptitle("Vanishing gradients: per-layer gradient norms by activation, and with "
                 f"normalization (plain SGD, lr {res['lr']}; geometric mean over seeds)"
                 if groups else "Vanishing gradients: per-layer gradient norms by activation "
                 f"(plain SGD, lr {res['lr']}; geometric mean over seeds)")
    files.append(save_figure(fig, out, "depth_gradients.png"))

    fig, axes = figure(len(rows), 5.5, 4.2)
    for ax, (which, nets) in zip(axes, rows):
        for n, label, style in nets:
            stats = [mean_std([r["test_metric"] for r in by[(n, d)]]) for d in res["depths"]]
            ax.errorbar(res["depths"], [s[0] for s in stats], yerr=[s[1] for s in stats],
                        marker="o", ms=4, capsize=2, label=label, **style)
        ax.set_xlabel("hidden layers")
        ax.set_ylabel(f"test {res['metric']}")
        ax.set_title(which)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Depth x activation: test {res['metric']} after {res['epochs']} epochs of "
                 "plain SGD")
    files.append(save_figure(fig, out, "depth_accuracy.png"))
    return files


DEPTH_STUDY = Study(
    key="depth", title="3. Depth x activation: vanishing gradients, and normalization",
    run=depth_activation, markdown=_markdown, plot=_plot,
    jobs=(Job("depth", "digits", {},
              {"depths": (1, 4, 8), "activations": ("sigmoid", "tanh", "relu"), "epochs": 4,
               "width": 32}),))
