"""A fitted estimator's state as JSON and plain arrays in a steepest archive: the bytes its
pickle (and joblib, copy.deepcopy) holds, no pickled object besides the estimator's class.
The model is kept as its own file's bytes (steepest.saving), the optimizer as its archive's,
rebuilt over the model when unpickled.
"""
from __future__ import annotations

import numpy as np
from sklearn.preprocessing import LabelBinarizer

from .. import optim
from ..archive import FORMAT_VERSION, archive_bytes, read_archive
from ..model import Sequential
from ..saving import MODEL_FORMAT

ESTIMATOR_FORMAT = "steepest.estimator"


def estimator_bytes(estimator) -> dict:
    """{ESTIMATOR_FORMAT: bytes}: the estimator's parameters and fitted state (its
    __getstate__)."""
    arrays, header = {}, {"format": ESTIMATOR_FORMAT, "version": FORMAT_VERSION}
    state = {k: v for k, v in estimator.__dict__.items()
             if k not in ("coefs_", "intercepts_", "_optimizer")}
    header["state"] = _encode(state, arrays, "state")
    if "_optimizer" in estimator.__dict__:
        opt = estimator._optimizer.__getstate__()
        arrays["optimizer"] = _as_bytes_array(opt[optim.OPTIMIZER_FORMAT])
        header["optimizer"] = {"type": type(estimator._optimizer).__name__,
                               "params": opt["params"]}
    header["arrays"] = {name: [list(a.shape), a.dtype.str] for name, a in arrays.items()}
    return {ESTIMATOR_FORMAT: archive_bytes(header, arrays)}


def restore(estimator, state: dict) -> None:
    """Sets the estimator's attributes from what estimator_bytes returned (its
    __setstate__), the optimizer rebuilt over the model."""
    header, arrays = read_archive(state[ESTIMATOR_FORMAT], ESTIMATOR_FORMAT, _declared_arrays)
    estimator.__dict__.update(_decode(header["state"], arrays))
    if "optimizer" in header:
        kind = optim.OPTIMIZERS[header["optimizer"]["type"]]
        estimator._optimizer = kind.__new__(kind)
        estimator._optimizer.__setstate__({
            "model": estimator._model, "params": header["optimizer"]["params"],
            optim.OPTIMIZER_FORMAT: arrays["optimizer"].tobytes()})


def _encode(value, arrays: dict, path: str):
    """value as JSON, its arrays moved into `arrays` (named by their path), a steepest model
    as the bytes of its own file. Only the kinds of values an estimator holds."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return {"scalar": [value.dtype.str, value.item()]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, arrays, f"{path}.{i}") for i, v in enumerate(value)]
        return items if isinstance(value, list) else {"tuple": items}
    if isinstance(value, dict):
        return {"dict": [[_encode(k, arrays, f"{path}.k{i}"), _encode(v, arrays, f"{path}.{i}")]
                         for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, np.ndarray):
        strings = value.dtype == object  # feature names, labels: strings
        arrays[path] = value.astype(str) if strings else value
        return {"array": path, "object": bool(strings)}
    if isinstance(value, np.random.RandomState):
        return {"random_state": _encode(value.get_state(), arrays, path)}
    if isinstance(value, LabelBinarizer):
        return {"label_binarizer": _encode(dict(value.__dict__), arrays, path)}
    if isinstance(value, Sequential):
        arrays[path] = _as_bytes_array(value.__getstate__()[MODEL_FORMAT])
        return {"model": path}
    raise TypeError(f"cannot pickle {path} ({type(value).__name__}): a steepest estimator "
                    "pickles plain values only")


def _decode(value, arrays: dict):
    """The inverse of _encode."""
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "dict" in value:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in value["dict"]}
    if "tuple" in value:
        return tuple(_decode(v, arrays) for v in value["tuple"])
    if "scalar" in value:
        return np.dtype(value["scalar"][0]).type(value["scalar"][1])
    if "array" in value:
        a = arrays[value["array"]]
        return a.astype(object) if value["object"] else a
    if "random_state" in value:
        random_state = np.random.RandomState()
        random_state.set_state(_decode(value["random_state"], arrays))
        return random_state
    if "label_binarizer" in value:
        binarizer = LabelBinarizer()
        binarizer.__dict__.update(_decode(value["label_binarizer"], arrays))
        return binarizer
    if "model" in value:
        model = Sequential.__new__(Sequential)
        model.__setstate__({MODEL_FORMAT: arrays[value["model"]].tobytes()})
        return model
    raise ValueError(f"<bytes>: unknown value {value!r} in a pickled estimator")


def _as_bytes_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def _declared_arrays(header: dict) -> dict:
    """{name: (shape, dtype)} of the arrays a pickled estimator's header declares."""
    try:
        declared = {name: (tuple(int(d) for d in shape), np.dtype(dtype))
                    for name, (shape, dtype) in header["arrays"].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"<bytes>: bad array declarations in a pickled estimator ({e})") \
            from None
    if any(dtype.kind not in "biufU" for _, dtype in declared.values()):
        raise ValueError("<bytes>: a pickled estimator may hold plain arrays only")
    return declared
