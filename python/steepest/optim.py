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

from typing import Any, Iterable, Sequence, Union

import numpy as np

from . import _checks, _core
from .archive import FORMAT_VERSION, archive_bytes, read_archive
from .errors import TrainingDiverged
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

    def __init__(self, params: Iterable[Parameter], **hyper: Any) -> None:
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
        config = _core.OptimizerConfig()
        config.kind = self.kind
        for name, value in hyper.items():
            setattr(config, name, value)
        self._impl = _CORE_OPTIMIZERS[params[0].data.dtype.name](config, _ranges(params))

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
        buffers = self.state_buffers()
        if set(state["state"]) != set(buffers):
            raise ValueError(f"state buffers {sorted(state['state'])} do not match "
                             f"{sorted(buffers)}")
        for k, v in state["state"].items():
            v = np.asarray(v)
            if v.shape != buffers[k].shape:
                raise ValueError(f"state buffer {k!r} has shape {v.shape}, "
                                 f"expected {buffers[k].shape}")
            buffers[k][...] = v
        mine = self.hyperparameters()
        for name, value in state["hyperparameters"].items():
            if self._fixed_part(name, value) != self._fixed_part(name, mine.get(name)):
                raise ValueError(f"state has {name}={value!r} but this optimizer has "
                                 f"{name}={mine.get(name)!r}; build it with the same "
                                 "hyper-parameters (only what schedules change may differ: "
                                 f"{', '.join(self.scheduled)})")
        for name in self.scheduled:
            if name in state["hyperparameters"]:
                setattr(self, name, state["hyperparameters"][name])
        self._impl.steps = int(state["steps"])

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
        header = {"format": OPTIMIZER_FORMAT, "version": FORMAT_VERSION,
                  "type": state["type"], "hyperparameters": state["hyperparameters"],
                  "steps": state["steps"], "buffers": sorted(state["state"])}
        return {"model": self.model, "params": [p.name for p in self.params],
                OPTIMIZER_FORMAT: archive_bytes(header, state["state"])}

    def __setstate__(self, state: dict) -> None:
        header, buffers = read_archive(state[OPTIMIZER_FORMAT], OPTIMIZER_FORMAT,
                                       lambda header: _state_shapes(header, state))
        if header.get("type") != type(self).__name__:
            raise ValueError(f"<bytes> holds a {header.get('type')!r} optimizer, not "
                             f"{type(self).__name__}")
        named = dict(state["model"].named_parameters())
        type(self).__init__(self, [named[name] for name in state["params"]],
                            **header["hyperparameters"])
        self.load_state_dict({**header, "state": buffers})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


def _state_shapes(header: dict, state: dict) -> dict:
    """{buffer: (shape, dtype)} of a pickled optimizer's state: each as long as its
    parameters together, in the model's dtype."""
    named = dict(state["model"].named_parameters())
    size = sum(named[name].size for name in state["params"])
    dtype = state["model"].dtype
    return {name: ((size,), dtype) for name in header.get("buffers", ())}


def check_optimizer(optimizer, model) -> None:
    """Refuses (TypeError / ValueError) anything but an optimizer of model's parameters."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a steepest optimizer (st.optim.*), got "
                        f"{optimizer!r}")
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
