"""Study 6: backpropagation vs numerical differentiation."""
from __future__ import annotations

import time

import numpy as np

from ..gradcheck import backprop_gradient, numerical_gradient, relative_errors
from .common import (Job, Study, build, describe, figure, group, loss_for, pm, save_figure, say,
                     sci, seed_list, table)


def backprop_vs_numerical(data, seeds=3, widths=(2, 4, 8, 16, 32, 64, 128, 256), rows=64,
                          eps=1e-6, activation="tanh", verbose=False) -> dict:
    """The gradient of the loss on `rows` training rows, computed by backpropagation (one
    forward and one backward pass) and by central finite differences (two forward passes per
    parameter), in float64, for one hidden layer of growing width. Per (width, seed): the
    parameter count, the max relative error between the two (as st.gradcheck), and the time
    of a forward pass, of backpropagation, and of the finite differences."""
    X = np.ascontiguousarray(data["X_train"][:rows], np.float64)
    y = data["y_train"][:rows]
    loss = loss_for(data)
    runs = []
    for width in widths:
        for seed in seed_list(seeds):
            model = build(data, (width,), activation, seed=seed, dtype="float64")
            Xc, yc = model.check_data(X, y, loss)

            t_forward = _best_time(lambda: loss.forward(model.predict(Xc), yc))
            t_backprop = _best_time(lambda: backprop_gradient(model, loss, Xc, yc))
            analytic = backprop_gradient(model, loss, Xc, yc)
            params = model.num_parameters()
            start = time.perf_counter()
            numeric = numerical_gradient(model, loss, Xc, yc, eps)
            t_numeric = time.perf_counter() - start
            err = relative_errors(analytic, numeric)
            rel = float(np.linalg.norm(analytic - numeric) / max(np.linalg.norm(analytic),
                                                                 1e-300))
            runs.append({"width": width, "seed": seed, "params": params,
                         "max_rel_error": float(err.max()),
                         "median_rel_error": float(np.median(err)), "norm_rel_error": rel,
                         "t_forward": t_forward, "t_backprop": t_backprop,
                         "t_numeric": t_numeric})
        say(verbose, f"  width {width}: {params} parameters, finite differences "
                     f"{t_numeric:.2f} s")
    return {"study": "backprop", "data": describe(data), "rows": rows, "eps": eps,
            "activation": activation, "widths": list(widths), "runs": runs,
            "seeds": len(seed_list(seeds))}


def _best_time(fn, min_time=0.1, repeats=7) -> float:
    """Best of `repeats` averages over enough calls to last min_time seconds."""
    fn()
    n, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time / repeats or n >= 1 << 16:
            break
        n *= 2
    best = elapsed / n
    for _ in range(repeats - 1):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


# -- the report ------------------------------------------------------------------------------
def _markdown(res) -> str:
    rows = []
    last = group(res["runs"], "width")[-1][1]
    worst = max(r["t_backprop"] / r["t_forward"] for r in res["runs"])
    reading = (f"\n\nAt {last[0]['params']:,} parameters one numerical gradient took "
               f"{np.mean([r['t_numeric'] / r['t_backprop'] for r in last]):,.0f} times as long "
               f"as backpropagation, which stayed within {worst:.1f} forward passes at every "
               "size.")
    for (width,), rs in group(res["runs"], "width"):
        fwd = [r["t_forward"] for r in rs]
        rows.append([width, rs[0]["params"], sci(max(r["norm_rel_error"] for r in rs)),
                     sci(max(r["max_rel_error"] for r in rs)),
                     pm([r["t_forward"] * 1e6 for r in rs], 0),
                     pm([r["t_backprop"] * 1e6 for r in rs], 0),
                     pm([r["t_backprop"] / f for r, f in zip(rs, fwd)], 1),
                     pm([r["t_numeric"] * 1e3 for r in rs], 1),
                     pm([r["t_numeric"] / f for r, f in zip(rs, fwd)], 0)])
    return (f"Setup: {res['data']}; the gradient of the mean loss on {res['rows']} training "
            f"rows for one hidden layer of growing width ({res['activation']}), float64. "
            "Backpropagation: one forward and one backward pass. Numerical: central "
            f"differences (L(p + ε) - L(p - ε)) / 2ε with ε = {res['eps']:g} for every "
            "parameter, i.e. two forward passes each. Gradient error: ‖backprop - numerical‖ "
            "/ ‖backprop‖ for the whole gradient; entry error: the largest "
            "|backprop - numerical| / max(|backprop| + |numerical|, 1e-7) over all parameters "
            "(st.gradcheck's measure, large where an entry is itself tiny); both the worst over "
            "the seeds. Times through the Python API (each call has a fixed "
            f"overhead of some microseconds); best of several repeats. {res['seeds']} seeds.\n\n"
            + table(["hidden width", "parameters", "gradient error", "max entry error",
                     "forward (µs)",
                     "backprop (µs)", "backprop / forward", "numerical (ms)",
                     "numerical / forward"], rows) + reading)


def _plot(res, out) -> list:
    fig, (ax1, ax2) = figure(2, 5.5, 4.2)
    groups = group(res["runs"], "width")
    p = [rs[0]["params"] for _, rs in groups]
    for key, label in (("t_forward", "forward pass"), ("t_backprop", "backpropagation"),
                       ("t_numeric", "finite differences")):
        ax1.plot(p, [np.mean([r[key] for r in rs]) for _, rs in groups], marker="o", ms=4,
                 label=label)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("parameters")
    ax1.set_ylabel("seconds")
    ax1.set_title("Cost of one gradient")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(p, [max(r["norm_rel_error"] for r in rs) for _, rs in groups], marker="o", ms=4,
             label="whole gradient: ||a - n|| / ||a||")
    ax2.plot(p, [max(r["max_rel_error"] for r in rs) for _, rs in groups], marker="o", ms=4,
             label="worst entry")
    ax2.plot(p, [np.median([r["median_rel_error"] for r in rs]) for _, rs in groups],
             marker="o", ms=4, label="median entry")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("parameters")
    ax2.set_ylabel("relative error")
    ax2.set_title("Backprop vs finite differences: agreement")
    ax2.legend()
    ax2.grid(alpha=0.3)
    return [save_figure(fig, out, "backprop_vs_numerical.png")]


BACKPROP_STUDY = Study(
    key="backprop", title="6. Backpropagation vs numerical differentiation",
    run=backprop_vs_numerical, markdown=_markdown, plot=_plot,
    jobs=(Job("backprop", "digits", {}, {"widths": (2, 8, 32), "rows": 32}),))
