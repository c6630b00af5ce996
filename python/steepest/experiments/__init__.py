"""Gradient descent and backpropagation, measured: six studies and a report writer.

Backpropagation computes the gradient (the chain rule, layer by layer, backwards); gradient
descent uses it. Each study is a function that trains real models on a data set (the
runner's: scikit-learn's digits and diabetes; yours: any ``prepare()`` result) over several
seeds and returns plain data (dicts and lists of numbers); ``run()`` writes a Markdown report
with tables (mean ± std over the seeds) and PNG plots (when matplotlib is installed)::

    python -m steepest experiments [--quick] [--out DIR] [--seeds N] [--only STUDY ...]

    from steepest import experiments as ex
    data = ex.prepare((X, y))                      # or ex.prepare("digits")
    result = ex.learning_rate(data, seeds=3)       # result["runs"]: one record per run

Studies: batch (batch vs mini-batch vs stochastic), learning_rate, depth (x activation),
techniques, init, backprop (vs numerical differentiation); one module each (run, table, plot),
shared helpers in ``common``, the report and the sub-command in ``report``.
"""
from .backprop import backprop_vs_numerical
from .batch import batch_modes
from .common import build, mean_std, optimizer, pm, prepare, table, train_run
from .depth import RECOMMENDED_INIT, depth_activation
from .initializers import initialization
from .learning_rates import learning_rate
from .report import STUDIES, TITLES, experiments_parser, markdown, plot, run, run_cli
from .training_techniques import TECHNIQUES, techniques

__all__ = ["prepare", "build", "optimizer", "train_run", "mean_std", "pm", "table",
           "batch_modes", "learning_rate", "depth_activation", "techniques", "initialization",
           "backprop_vs_numerical", "RECOMMENDED_INIT", "TECHNIQUES", "STUDIES", "TITLES", "run",
           "markdown", "plot", "experiments_parser", "run_cli"]
