"""Optimizers: gradient descent and its variants, with torch.optim's names, defaults and
semantics. Each update is one C++ loop over the model's flat parameter buffer, in place.
Every optimizer takes torch's keyword ``maximize=True``: it then ascends the gradient (the
update is that of -grad, weight decay and state included, as torch does it).

    opt = st.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad(); ...; opt.step()
    opt.lr = 0.01        # may change between steps (that is all a schedule does)

An optimizer knows Parameters, never a model (given a model, as ``st.optim.Adam(model)``, it
takes its ``parameters()``): it reaches the core network their views belong to through
``params[0].model`` (this module and the model's, steepest.model and its model_* parts, are
the only Python code that touches the binding objects). A pickled optimizer holds that model too.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from . import _checks, _core
from .archive import FORMAT_VERSION, archive_bytes, read_archive
from .errors import TrainingDiverged
from .line_search import strong_wolfe
from .parameter import Parameter

_CORE_OPTIMIZERS = {"float32": _core.Optimizer32, "float64": _core.Optimizer64}
OPTIMIZER_FORMAT = "steepest.optimizer"  # the archive a pickled optimizer holds


class Optimizer:
    kind = None
    _hyper = ()  # names of the hyper-parameters, in the order of the signature
    # Hyper-parameters that may change between steps (schedules change them; a checkpoint
    # keeps their current values and load_state_dict takes them from the state).
    scheduled = ("lr",)
    # The lr before any schedule changed it: set by the first scheduler built on this
    # optimizer and shared by the ones after it (torch's param_group["initial_lr"]).
    initial_lr = None
    # True for an optimizer whose step(closure) evaluates the loss itself (LBFGS): fit and
    # train_step, which compute one gradient and then step, cannot drive it.
    closure_based = False

    def __init__(self, params: Iterable[Parameter], **hyper: Any) -> None:
        self._take_params(params)
        config = _core.OptimizerConfig()
        config.kind = self.kind
        for name, value in hyper.items():
            setattr(config, name, value)
        self._impl = _CORE_OPTIMIZERS[self.model.dtype.name](config, _ranges(self.params))

    def _take_params(self, params: Iterable[Parameter]) -> None:
        """Checks params (a model's Parameters, or the model) and keeps them and their model."""
        if callable(getattr(params, "parameters", None)):  # a model, as Keras's habit passes
            params = params.parameters()
        params = list(params)
        if not params:
            raise ValueError("params is empty: pass model.parameters()")
        if not all(isinstance(p, Parameter) for p in params):
            raise TypeError("params must be Parameters, as returned by model.parameters()")
        self.model = params[0].model
        if any(p.model is not self.model for p in params):
            raise ValueError("params must all belong to the same model")
        self.params = params

    # -- the learning rate, changeable between steps ------------------------------------------
    @property
    def lr(self) -> float:
        return self._impl.config.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._update_config(lr=_checks.real(value, "lr", low=0.0))

    def _update_config(self, **values: Any) -> None:
        config = self._impl.config
        for name, value in values.items():
            setattr(config, name, value)
        self._impl.config = config

    @property
    def steps(self) -> int:
        """Updates applied so far."""
        return self._impl.steps

    def hyperparameters(self) -> dict[str, Any]:
        config = self._impl.config
        return {name: getattr(config, name) for name in self._hyper}

    # -- the update -------------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Sets the gradients of the optimized parameters to zero (in place)."""
        for p in self.params:
            p.grad[...] = 0

    def step(self, check_finite: bool = True) -> None:
        """One gradient-descent update of the parameters from their gradients, in place.

        With check_finite (the default) a non-finite gradient, or an update that would leave a
        parameter NaN or infinite, raises TrainingDiverged and leaves parameters and optimizer
        state as they were."""
        net = self.model._net  # the core network whose flat buffers the parameters view
        if not check_finite:
            self._impl.step(net)
            return
        if not np.isfinite(net.grads).all():
            raise TrainingDiverged("non-finite gradient")
        saved = self.snapshot()
        self._impl.step(net)
        if not np.isfinite(net.params).all():
            self.restore(saved)
            raise TrainingDiverged("non-finite parameter after the update (overflow)")

    def snapshot(self):
        """Copies of everything a step changes (the model's whole flat parameter buffer, the
        state buffers, the step count), for restore(): the divergence guard's undo."""
        return (self.model._net.params.copy(),
                {k: v.copy() for k, v in self.state_buffers().items()}, self._impl.steps)

    def restore(self, snapshot) -> None:
        """Puts back parameters, state buffers and step count as snapshot() copied them."""
        params, state, steps = snapshot
        self.model._net.params[...] = params
        for k, v in self.state_buffers().items():
            v[...] = state[k]
        self._impl.steps = steps

    # -- state, for checkpoints -------------------------------------------------------------
    def state_buffers(self) -> dict[str, np.ndarray]:
        """{name: zero-copy view} of the state buffers (torch's names: "momentum_buffer",
        "exp_avg", ...; none for plain SGD), each as long as the optimized parameters
        together, laid out as their pieces of the flat parameter buffer."""
        return self._impl.state()

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, step count and state buffers (copies)."""
        return {"type": type(self).__name__, "hyperparameters": self.hyperparameters(),
                "steps": self.steps,
                "state": {k: v.copy() for k, v in self.state_buffers().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("type") != type(self).__name__:
            raise ValueError(f"state is for {state.get('type')!r}, not {type(self).__name__}")
        mine = self.hyperparameters()
        for name, value in state["hyperparameters"].items():
            if self._fixed_part(name, value) != self._fixed_part(name, mine.get(name)):
                raise ValueError(f"state has {name}={value!r} but this optimizer has "
                                 f"{name}={mine.get(name)!r}; build it with the same "
                                 "hyper-parameters (only what schedules change may differ: "
                                 f"{', '.join(self.scheduled)})")
        self._load_state(state["state"], int(state["steps"]))
        for name in self.scheduled:
            if name in state["hyperparameters"]:
                setattr(self, name, state["hyperparameters"][name])

    def _load_state(self, state: dict[str, Any], steps: int) -> None:
        """Copies a state_dict's "state" (checked) and step count into this optimizer."""
        buffers = self.state_buffers()
        if set(state) != set(buffers):
            raise ValueError(f"state buffers {sorted(state)} do not match {sorted(buffers)}")
        for k, v in state.items():
            v = np.asarray(v)
            if v.shape != buffers[k].shape:
                raise ValueError(f"state buffer {k!r} has shape {v.shape}, "
                                 f"expected {buffers[k].shape}")
        for k, v in state.items():
            buffers[k][...] = v
        self._impl.steps = steps

    def _fixed_part(self, name: str, value: Any) -> Any:
        """What of hyper-parameter `name` no schedule changes, which a loaded state must
        match (None: all of it may change)."""
        return None if name in self.scheduled else _plain(value)

    # -- pickling, copy.deepcopy, joblib -----------------------------------------------------
    def __getstate__(self) -> dict:
        """The model (pickled as itself: its file's bytes, and one object with the model when
        both are pickled together), the names of the optimized parameters, and hyper-
        parameters, step count and state buffers as the bytes of a steepest archive."""
        state = self.state_dict()
        header, arrays = self._archived(state)
        header = {"format": OPTIMIZER_FORMAT, "version": FORMAT_VERSION,
                  "type": state["type"], "hyperparameters": state["hyperparameters"],
                  "steps": state["steps"], **header}
        return {"model": self.model, "params": [p.name for p in self.params],
                OPTIMIZER_FORMAT: archive_bytes(header, arrays)}

    def __setstate__(self, state: dict) -> None:
        named = dict(state["model"].named_parameters())
        size = sum(named[name].size for name in state["params"])
        dtype = state["model"].dtype
        header, arrays = read_archive(state[OPTIMIZER_FORMAT], OPTIMIZER_FORMAT,
                                      lambda header: self._archive_shapes(header, size, dtype))
        if header.get("type") != type(self).__name__:
            raise ValueError(f"<bytes> holds a {header.get('type')!r} optimizer, not "
                             f"{type(self).__name__}")
        type(self).__init__(self, [named[name] for name in state["params"]],
                            **header["hyperparameters"])
        self.load_state_dict({**header, "state": self._unarchived(header, arrays)})

    # How a pickle holds the "state" of state_dict(): header entries (JSON) and arrays.
    def _archived(self, state: dict) -> tuple[dict, dict]:
        return {"buffers": sorted(state["state"])}, state["state"]

    @staticmethod
    def _archive_shapes(header: dict, size: int, dtype) -> dict:
        """{array: (shape, dtype)} of a pickled state, for optimized parameters of `size`
        numbers together in the model's dtype: every buffer is as long as them."""
        return {name: ((size,), dtype) for name in header.get("buffers", ())}

    @staticmethod
    def _unarchived(header: dict, arrays: dict) -> dict:
        return arrays

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


def check_optimizer(optimizer, model) -> None:
    """Refuses (TypeError / ValueError) anything but an optimizer of model's parameters."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a steepest optimizer (st.optim.*), got "
                        f"{optimizer!r}")
    if optimizer.closure_based:
        raise TypeError(f"{type(optimizer).__name__} is closure-based (as torch's): fit and "
                        "train_step cannot drive it; call optimizer.step(closure) with a "
                        "closure that recomputes the loss and gradients, for example "
                        "lambda: model.loss_and_grad(X, y, loss)")
    if optimizer.model is not model:
        raise ValueError("optimizer was built for another model's parameters")


def clip_threshold(clip_grad_norm) -> float:
    """The core's clip_norm for train_step / fit's clip_grad_norm: 0 (off) for None, else a
    positive number."""
    if clip_grad_norm is None:
        return 0.0
    return _checks.real(clip_grad_norm, "clip_grad_norm", low=0.0, low_open=True)


def _plain(value):
    """Hyper-parameter values compared across a save/load: tuples and lists alike."""
    return list(value) if isinstance(value, (tuple, list)) else value


def _ranges(params):
    """(offset, size) pieces of the flat buffer, adjacent pieces merged."""
    pieces = sorted((p.offset, p.size) for p in params)
    merged = []
    for off, size in pieces:
        if merged and merged[-1][0] + merged[-1][1] == off:
            merged[-1] = (merged[-1][0], merged[-1][1] + size)
        elif merged and off < merged[-1][0] + merged[-1][1]:
            raise ValueError("params lists the same parameter twice")
        else:
            merged.append((off, size))
    return merged


def _momentum_property() -> property:
    """The `momentum` of SGD and RMSprop, changeable between steps (OneCycleLR cycles it),
    but not to or from 0: the momentum buffer exists only when built with momentum > 0."""

    def get(self: Optimizer) -> float:
        return float(self._impl.config.momentum)

    def set(self: Optimizer, value: float) -> None:
        value = _checks.real(value, "momentum", low=0.0)
        if (value > 0) != (self._impl.config.momentum > 0):
            raise ValueError(f"momentum cannot change from {self._impl.config.momentum} to "
                             f"{value}: an optimizer built with momentum 0 has no momentum "
                             "buffer (and one built with momentum keeps using it); build it "
                             "with the momentum it needs")
        self._update_config(momentum=value)

    return property(get, set, doc=_momentum_property.__doc__)


def _nonneg(**values):
    return {k: _checks.real(v, k, low=0.0) for k, v in values.items()}


def _beta(betas):
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return [_checks.real(b, f"betas[{i}]", low=0.0, high=1.0, high_open=True)
            for i, b in enumerate(betas)]


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (heavy ball or Nesterov), dampening
    and L2 weight decay, exactly as torch.optim.SGD."""

    kind = _core.OptimizerKind.SGD
    _hyper = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")
    scheduled = ("lr", "momentum")
    momentum = _momentum_property()

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, *, maximize: bool = False) -> None:
        hyper = _nonneg(lr=lr, momentum=momentum, weight_decay=weight_decay)
        hyper["dampening"] = _checks.real(dampening, "dampening")
        if nesterov and (hyper["momentum"] <= 0 or hyper["dampening"] != 0):
            raise ValueError("nesterov requires momentum > 0 and dampening = 0")
        super().__init__(params, nesterov=bool(nesterov), maximize=bool(maximize), **hyper)


class Adam(Optimizer):
    """Adam (torch.optim.Adam): bias-corrected first and second moment estimates; weight_decay
    is added to the gradient (L2). amsgrad keeps the running maximum of the second moment."""

    kind = _core.OptimizerKind.Adam
    _hyper = ("lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "maximize")
    scheduled = ("lr", "betas")

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3,
                 betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        b1, b2 = _beta(betas)
        super().__init__(params, beta1=b1, beta2=b2, amsgrad=bool(amsgrad),
                         maximize=bool(maximize),
                         **_nonneg(lr=lr, eps=eps, weight_decay=weight_decay))

    def hyperparameters(self) -> dict[str, Any]:
        h = super().hyperparameters()
        h["betas"] = (h.pop("beta1"), h.pop("beta2"))
        return h

    def _fixed_part(self, name: str, value: Any) -> Any:
        if name == "betas":  # schedules change beta1 only
            return float(value[1])
        return super()._fixed_part(name, value)

    @property
    def betas(self) -> tuple[float, float]:
        """(beta1, beta2), changeable between steps (OneCycleLR cycles beta1)."""
        config = self._impl.config
        return (config.beta1, config.beta2)

    @betas.setter
    def betas(self, value: Sequence[float]) -> None:
        beta1, beta2 = _beta(value)
        self._update_config(beta1=beta1, beta2=beta2)


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW): p *= 1 - lr * weight_decay."""

    kind = _core.OptimizerKind.AdamW

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3,
                 betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop): divides by a running RMS of the gradient; optional
    momentum, centering (subtracts the running mean) and L2 weight decay."""

    kind = _core.OptimizerKind.RMSprop
    _hyper = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")
    scheduled = ("lr", "momentum")
    momentum = _momentum_property()

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False, *, maximize: bool = False) -> None:
        super().__init__(params, centered=bool(centered), maximize=bool(maximize),
                         **_nonneg(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                   momentum=momentum))


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad): divides by the root of the summed squared gradients."""

    kind = _core.OptimizerKind.Adagrad
    _hyper = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "maximize")

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, *, maximize: bool = False) -> None:
        super().__init__(params, maximize=bool(maximize),
                         **_nonneg(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                   initial_accumulator_value=initial_accumulator_value,
                                   eps=eps))


class LBFGS(Optimizer):
    """L-BFGS (torch.optim.LBFGS, step for step): a quasi-Newton method. It keeps the last
    history_size parameter steps s and gradient changes y, moves along d = -H g where H, the
    approximation of the inverse Hessian they define, is applied by the two-loop recursion,
    with the fixed step lr (the first step ever scaled down to min(1, 1/||g||_1) * lr), or
    with a strong-Wolfe line search (line_search_fn="strong_wolfe").

    Closure-based, like torch's: ``step(closure)`` makes up to max_iter updates and calls
    closure() up to max_eval times (default max_iter * 5 // 4); closure() must recompute the
    loss and put its gradient into the parameters' grad (overwriting it), and return the loss.
    A step stops early when the largest gradient component is <= tolerance_grad, or the loss
    or the parameters change by <= tolerance_change.

        opt = st.optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe")
        for _ in range(10):
            opt.step(lambda: model.loss_and_grad(X, y, loss))   # full batch

    fit and train_step, which compute one gradient per step, refuse it (TypeError). The state
    (torch's func_evals, n_iter, d, t, old_dirs, old_stps, ro, H_diag, prev_flat_grad,
    prev_loss) is numpy arrays of the model's dtype over the optimized parameters flattened
    and concatenated in the order of params, and Python numbers; state_dict() holds it.
    """

    closure_based = True
    _hyper = ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change",
              "history_size", "line_search_fn")
    _numbers = ("func_evals", "n_iter", "t", "H_diag", "prev_loss")  # None before a step
    _vectors = ("d", "prev_flat_grad")  # (n,), None before a step
    _histories = ("old_dirs", "old_stps", "ro")  # (k, n), (k, n), (k,); k <= history_size

    def __init__(self, params: Iterable[Parameter], lr: float = 1.0, max_iter: int = 20,
                 max_eval: Optional[int] = None, tolerance_grad: float = 1e-7,
                 tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: Optional[str] = None) -> None:
        self._take_params(params)
        self.lr = lr
        max_iter = _checks.integer(max_iter, "max_iter", low=1)
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"line_search_fn must be None or 'strong_wolfe', got "
                             f"{line_search_fn!r}")
        self._config = {"max_iter": max_iter,
                        "max_eval": _checks.integer(max_eval, "max_eval", low=1),
                        **_nonneg(tolerance_grad=tolerance_grad,
                                  tolerance_change=tolerance_change),
                        "history_size": _checks.integer(history_size, "history_size", low=1),
                        "line_search_fn": line_search_fn}
        self._size = sum(p.size for p in self.params)
        self.state: dict[str, Any] = {"func_evals": 0, "n_iter": 0,
                                      **dict.fromkeys(self._numbers[2:] + self._vectors),
                                      "old_dirs": [], "old_stps": [], "ro": []}

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _checks.real(value, "lr", low=0.0)

    @property
    def steps(self) -> int:
        """Updates applied so far (torch's state["n_iter"])."""
        return self.state["n_iter"]

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, **self._config}

    # -- the flat vectors: the optimized parameters' pieces, concatenated in params' order --
    def _flat_params(self) -> np.ndarray:
        return np.concatenate([p.data.ravel() for p in self.params])

    def _flat_grad(self) -> np.ndarray:
        return np.concatenate([p.grad.ravel() for p in self.params])

    def _pieces(self, flat: np.ndarray):
        """(parameter, its piece of the flat vector, in its shape), in params' order."""
        offset = 0
        for p in self.params:
            yield p, flat[offset:offset + p.size].reshape(p.shape)
            offset += p.size

    def _set_params(self, flat: np.ndarray) -> None:
        for p, piece in self._pieces(flat):
            p.data[...] = piece

    def _add_to_params(self, t: float, d: np.ndarray) -> None:
        """params += t * d."""
        for p, piece in self._pieces(d):
            p.data += t * piece

    def _loss_and_grad(self, closure: Callable[[], Any]) -> tuple[float, np.ndarray]:
        return float(closure()), self._flat_grad()

    @staticmethod
    def _direction(grad, old_dirs, old_stps, ro, H_diag) -> np.ndarray:
        """d = -H grad by the two-loop recursion over the history (newest first, then back)."""
        al = [0.0] * len(old_dirs)
        q = -grad
        for i in range(len(old_dirs) - 1, -1, -1):
            al[i] = float(old_stps[i].dot(q)) * ro[i]
            q -= al[i] * old_dirs[i]
        r = q * H_diag
        for i in range(len(old_dirs)):
            be_i = float(old_dirs[i].dot(r)) * ro[i]
            r += (al[i] - be_i) * old_stps[i]
        return r

    # -- the update -------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Up to max_iter L-BFGS updates of the parameters, in place; returns what the first
        closure() call returned (the loss before the updates), as torch does."""
        if not callable(closure):
            raise TypeError("LBFGS.step needs closure, a function that recomputes the loss and "
                            f"the gradients and returns the loss, got {closure!r}")
        cfg, lr, state = self._config, self._lr, self.state
        max_iter, max_eval = cfg["max_iter"], cfg["max_eval"]
        tolerance_grad, tolerance_change = cfg["tolerance_grad"], cfg["tolerance_change"]

        orig_loss = closure()
        loss = float(orig_loss)
        flat_grad = self._flat_grad()
        current_evals = 1
        state["func_evals"] += 1
        if np.abs(flat_grad).max() <= tolerance_grad:  # already optimal
            return orig_loss

        d, t, H_diag, prev_flat_grad, prev_loss = (
            state[k] for k in ("d", "t", "H_diag", "prev_flat_grad", "prev_loss"))
        old_dirs, old_stps, ro = state["old_dirs"], state["old_stps"], state["ro"]
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            # the direction
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y.dot(s))
                if ys > 1e-10:  # a curvature pair worth keeping
                    if len(old_dirs) == cfg["history_size"]:
                        del old_dirs[0], old_stps[0], ro[0]
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / float(y.dot(y))  # the scale of the initial inverse Hessian
                d = self._direction(flat_grad, old_dirs, old_stps, ro, H_diag)
            prev_flat_grad = flat_grad.copy()
            prev_loss = loss

            # the step length
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(np.abs(flat_grad).sum())) * lr
            else:
                t = lr
            gtd = float(flat_grad.dot(d))  # the directional derivative
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if cfg["line_search_fn"] == "strong_wolfe":
                x_init = self._flat_params()

                def obj_func(step: float, x_init=x_init, d=d) -> tuple[float, np.ndarray]:
                    self._add_to_params(step, d)
                    try:
                        return self._loss_and_grad(closure)
                    finally:
                        self._set_params(x_init)

                loss, flat_grad, t, ls_func_evals = strong_wolfe(
                    obj_func, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals)
                self._add_to_params(t, d)
                opt_cond = np.abs(flat_grad).max() <= tolerance_grad
            else:
                self._add_to_params(t, d)  # a fixed step
                if n_iter != max_iter:  # no evaluation after the last update, as torch
                    loss, flat_grad = self._loss_and_grad(closure)
                    opt_cond = np.abs(flat_grad).max() <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            # the stopping conditions
            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if np.abs(d * t).max() <= tolerance_change:  # the parameters barely move
                break
            if abs(loss - prev_loss) < tolerance_change:  # the loss barely changes
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss

    # -- state, for checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, update count and the state: torch's names, the numbers as
        Python numbers (None before the first update), d and prev_flat_grad as (n,) arrays
        (None before the first update), old_dirs and old_stps as (k, n) arrays and ro as a
        (k,) array, k <= history_size; n: the optimized parameters' size together. Copies."""
        s = self.state
        dtype = self.model.dtype
        state = {k: s[k] for k in self._numbers}
        state.update({k: None if s[k] is None else s[k].copy() for k in self._vectors})
        for k in ("old_dirs", "old_stps"):
            state[k] = np.array(s[k], dtype=dtype).reshape(len(s[k]), self._size)
        state["ro"] = np.array(s["ro"], dtype=np.float64)
        return {"type": type(self).__name__, "hyperparameters": self.hyperparameters(),
                "steps": self.steps, "state": state}

    def _load_state(self, state: dict[str, Any], steps: int) -> None:
        expected = set(self._numbers + self._vectors + self._histories)
        if set(state) != expected:
            raise ValueError(f"state entries {sorted(state)} do not match {sorted(expected)}")
        n, dtype = self._size, self.model.dtype
        loaded: dict[str, Any] = {}
        for k in ("func_evals", "n_iter"):
            loaded[k] = _checks.integer(state[k], f"state[{k!r}]", low=0)
        for k in ("t", "H_diag", "prev_loss"):
            loaded[k] = None if state[k] is None else float(state[k])
        for k in self._vectors:
            v = state[k]
            if v is not None:
                v = np.asarray(v)
                if v.shape != (n,):
                    raise ValueError(f"state[{k!r}] has shape {v.shape}, expected ({n},)")
                v = v.astype(dtype)
            loaded[k] = v
        dirs, stps = np.asarray(state["old_dirs"]), np.asarray(state["old_stps"])
        ro = np.asarray(state["ro"], dtype=np.float64)
        k = len(ro)
        if ro.shape != (k,) or dirs.shape != (k, n) or stps.shape != (k, n):
            raise ValueError(f"state's history has old_dirs {dirs.shape}, old_stps "
                             f"{stps.shape} and ro {ro.shape}, expected (k, {n}), (k, {n}) "
                             "and (k,)")
        if k > self._config["history_size"]:
            raise ValueError(f"state holds {k} history pairs, more than history_size="
                             f"{self._config['history_size']}")
        loaded["old_dirs"] = list(dirs.astype(dtype))
        loaded["old_stps"] = list(stps.astype(dtype))
        loaded["ro"] = [float(r) for r in ro]
        if loaded["n_iter"] != steps:
            raise ValueError(f"state has steps={steps} but n_iter={loaded['n_iter']}")
        self.state = loaded

    def _archived(self, state: dict) -> tuple[dict, dict]:
        s = state["state"]
        arrays = {k: v for k, v in s.items() if isinstance(v, np.ndarray)}
        return {"numbers": {k: s[k] for k in self._numbers}, "history": len(s["ro"]),
                "vectors": [k for k in self._vectors if s[k] is not None]}, arrays

    @staticmethod
    def _archive_shapes(header: dict, size: int, dtype) -> dict:
        k = header["history"]
        return {**{name: ((size,), dtype) for name in header["vectors"]},
                "old_dirs": ((k, size), dtype), "old_stps": ((k, size), dtype),
                "ro": ((k,), np.dtype(np.float64))}

    @classmethod
    def _unarchived(cls, header: dict, arrays: dict) -> dict:
        return {**header["numbers"], **dict.fromkeys(cls._vectors), **arrays}


# The optimizers fit and train_step drive (one core update per gradient; not LBFGS).
OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad)}


def clip_grad_norm_(params: Union[Any, Iterable[Parameter]], max_norm: float) -> float:
    """Rescales the gradients by min(1, max_norm / (norm + 1e-6)), norm being their global L2
    norm, exactly as torch.nn.utils.clip_grad_norm_ (so a norm equal to max_norm is still
    scaled, by 1 - 1e-6 / max_norm); returns the norm before clipping. params: a model or its
    parameters."""
    max_norm = _checks.real(max_norm, "max_norm", low=0.0, low_open=True)
    if callable(getattr(params, "parameters", None)):  # a model: the core does its whole buffer
        return _core.clip_grad_norm(params._net, max_norm)
    params = list(params)
    norm = float(np.sqrt(sum(float(np.dot(p.grad.ravel(), p.grad.ravel())) for p in params)))
    factor = max_norm / (norm + 1e-6)
    if factor < 1:
        for p in params:
            p.grad *= factor
    return norm
