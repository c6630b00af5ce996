"""A user's script: test_package.py type-checks it with mypy --strict and runs it."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import steepest as st


def data(n: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)


def train(X: npt.NDArray[np.float32], y: npt.NDArray[np.int64]) -> st.Sequential:
    model = st.Sequential(st.Dense(4, 16, init="he_normal"), st.ReLU(), st.Dropout(0.1),
                          st.Dense(16, 16), st.LeakyReLU(0.01), st.Dense(16, 3),
                          dtype="float32", seed=0)
    loss = st.losses.CrossEntropy(label_smoothing=0.05)
    opt = st.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    callbacks: list[st.callbacks.Callback] = [
        st.callbacks.EarlyStopping(monitor="val_loss", patience=3),
        st.schedules.StepLR(opt, step_size=2, gamma=0.5)]
    history = model.fit(X, y, loss=loss, optimizer=opt, epochs=4, batch_size=16,
                        validation_data=(X[:20], y[:20]), callbacks=callbacks, verbose=0)
    last_loss: float = history["loss"][-1]
    step_loss: float = model.train_step(X[:8], y[:8], loss, opt, clip_grad_norm=1.0)
    assert np.isfinite(last_loss) and np.isfinite(step_loss)
    # the two algorithms, one step at a time
    adam = st.optim.Adam(model.parameters(), lr=1e-3)
    adam.zero_grad()
    value: float = loss.forward(model.forward(X[:8], training=True), y[:8])
    model.backward(loss.backward())
    st.clip_grad_norm_(model, 5.0)
    adam.step()
    adam.lr = 5e-4
    assert np.isfinite(value)
    return model


def inspect(model: st.Sequential, X: npt.NDArray[np.float32],
            y: npt.NDArray[np.int64]) -> dict[str, float]:
    for name, p in model.named_parameters():
        assert p.data.shape == p.grad.shape, name
    weights: dict[str, npt.NDArray[Any]] = model.state_dict()
    model.load_state_dict(weights)
    probabilities: npt.NDArray[Any] = model.predict(X)
    classes: npt.NDArray[Any] = model.predict_classes(X)
    assert probabilities.shape[0] == classes.shape[0] == model.num_parameters() * 0 + len(X)
    error: float = st.gradcheck(model, st.losses.CrossEntropy(), X[:4], y[:4], max_checks=20)
    assert error < 1e-3
    return model.evaluate(X, y, st.losses.CrossEntropy())


def share(model: st.Sequential, folder: Path, X: npt.NDArray[np.float32]) -> None:
    model.save(folder / "model.npz")
    same: st.Sequential = st.load(folder / "model.npz")
    assert np.array_equal(same.predict(X), model.predict(X))
    text: str = model.summary()
    assert "Dense" in text and "Dense" in repr(model)


def main() -> None:
    st.set_num_threads(1)
    threads: int = st.get_num_threads()
    assert threads == 1
    X, y = data(64)
    model = train(X, y)
    print(inspect(model, X, y))
    with tempfile.TemporaryDirectory() as folder:
        share(model, Path(folder), X)


if __name__ == "__main__":
    main()
