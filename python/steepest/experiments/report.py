"""The report writer (run: the studies, report.md, results.json, PNG plots) and the
``steepest experiments`` sub-command. Every study is registered here, once."""
from __future__ import annotations

import json
import os
import platform
import time
import warnings

import numpy as np

from .._version import __version__
from ..threads import get_num_threads, set_num_threads
from . import backprop, batch, depth, initializers, learning_rates, training_techniques
from .common import prepare, say

# key -> Study, in the report's order
STUDIES = {s.key: s for s in (batch.BATCH_STUDY, learning_rates.LEARNING_RATE_STUDY,
                              depth.DEPTH_STUDY, training_techniques.TECHNIQUES_STUDY,
                              initializers.INIT_STUDY, backprop.BACKPROP_STUDY)}
TITLES = {key: s.title for key, s in STUDIES.items()}


def plot(result, out) -> list:
    """PNG files (names inside `out`) for a study's result; [] without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    return STUDIES[result["study"]].plot(result, out)


def markdown(result) -> str:
    """The Markdown section (setup and tables, no title) of a study's result."""
    return STUDIES[result["study"]].markdown(result)


def run(out="steepest-experiments", quick=False, seeds=None, only=None, verbose=True,
        threads=1) -> dict:
    """Runs the studies (all, or `only`) and writes `out`/report.md, `out`/results.json and
    PNG plots. quick: small configurations (well under a minute). seeds: per configuration
    (default 3, quick 2). threads: CPU threads while running (default 1: the models are
    small, one thread makes the timings steadier; the previous setting is restored).
    Returns {study: result}."""
    previous = get_num_threads()
    set_num_threads(threads)
    try:
        return _run(out, quick, seeds, only, verbose)
    finally:
        set_num_threads(previous)


def _run(out, quick, seeds, only, verbose):
    only = list(only or STUDIES)
    unknown = [s for s in only if s not in STUDIES]
    if unknown:
        raise ValueError(f"unknown studies {unknown}: choose from {tuple(STUDIES)}")
    seeds = seeds if seeds is not None else (2 if quick else 3)
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    os.makedirs(out, exist_ok=True)
    start_all = time.perf_counter()
    load_start = _loadavg()
    data = {}  # data set name -> prepare()'s result, made once
    results, seconds, plots, headings = {}, {}, {}, {}
    for key in only:
        study = STUDIES[key]
        for job in study.jobs:
            say(verbose, f"[{job.key}] running...")
            t = time.perf_counter()
            if job.data not in data:
                data[job.data] = prepare(job.data)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # numpy on diverging runs
                results[job.key] = study.run(data[job.data], seeds,
                                             **(job.quick if quick else job.full),
                                             verbose=verbose)
            seconds[job.key] = time.perf_counter() - t
            plots[job.key] = plot(results[job.key], out)
            headings[job.key] = study.title + job.heading
            say(verbose, f"[{job.key}] {seconds[job.key]:.1f} s")
    total = time.perf_counter() - start_all
    env = {"steepest": __version__, "numpy": np.__version__, "python": platform.python_version(),
           "machine": platform.machine(), "cpus": os.cpu_count(), "threads": get_num_threads(),
           "load_average": [load_start, _loadavg()], "quick": quick, "seeds": seeds,
           "seconds": seconds, "total_seconds": total,
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write(_report_text(results, headings, plots, env, only))
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"environment": env, "results": results}, f, indent=1, default=_json)
    say(verbose, f"report: {os.path.join(out, 'report.md')} ({total:.0f} s)")
    return results


def _loadavg():
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _json(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _report_text(results, headings, plots, env, only) -> str:
    cmd = "python -m steepest experiments" + (" --quick" if env["quick"] else "") + \
        f" --seeds {env['seeds']}" + \
        ("" if env["threads"] == 1 else f" --threads {env['threads']}") + \
        ("" if list(only) == list(STUDIES) else " --only " + " ".join(only))
    parts = [
        "# Gradient descent and backpropagation, measured",
        "",
        "Backpropagation computes the gradient of the loss, layer by layer, backwards; "
        "gradient descent (and its variants) uses that gradient to update the parameters. "
        "They are two halves of one training step, not rivals. Every number below comes from "
        "training real models in this run; tables give mean ± std over seeds.",
        "",
        f"Regenerate: `{cmd}`.  ",
        f"steepest {env['steepest']}, numpy {env['numpy']}, Python {env['python']}, "
        f"{env['machine']}, {env['cpus']} CPUs, "
        f"{env['threads']} thread{'s' if env['threads'] > 1 else ''}; "
        f"{env['date']}; {env['total_seconds']:.0f} s in total. Load average at start/end: "
        f"{env['load_average'][0]} / {env['load_average'][1]} (times are wall-clock and "
        "depend on what else the machine is doing).",
        ""]
    if env["quick"]:
        parts += ["**Quick mode**: tiny configurations and few epochs, to check that "
                  "everything runs; the numbers are not meant to be read as results.", ""]
    for key, result in results.items():
        parts += [f"## {headings[key]}", "", markdown(result), ""]
        for name in plots.get(key, []):
            parts += [f"![{name}]({name})", ""]
        parts += [f"_{env['seconds'][key]:.1f} s._", ""]
    if not any(plots.values()):
        parts += ["(Plots need matplotlib: `pip install 'steepest[plot]'`.)", ""]
    return "\n".join(parts)


def experiments_parser(sub):
    """Registers `steepest experiments` on an argparse subparsers object."""
    p = sub.add_parser(
        "experiments", help="run the gradient descent / backpropagation studies and write a "
                            "report (Markdown + PNG plots)",
        description="Train real models on scikit-learn's digits and diabetes data sets and "
                    "write a report folder: report.md (tables, mean ± std over seeds), "
                    "results.json (every run) and PNG plots (with matplotlib). Studies: "
                    + ", ".join(STUDIES) + ".")
    p.add_argument("--quick", action="store_true",
                   help="small configurations, under a minute (a smoke test)")
    p.add_argument("--out", default="steepest-experiments", metavar="DIR",
                   help="report folder (default ./steepest-experiments)")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per configuration (default 3; 2 with --quick)")
    p.add_argument("--only", nargs="+", choices=tuple(STUDIES), metavar="STUDY",
                   help=f"run only these studies: {', '.join(STUDIES)}")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: the models are small and timings steadier)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=run_cli)


def run_cli(args) -> int:
    run(args.out, quick=args.quick, seeds=args.seeds, only=args.only, verbose=not args.quiet,
        threads=args.threads)
    return 0
