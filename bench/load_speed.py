"""st.load of a 50 MB model: the core network built without drawing initial weights (what
st.load does) against drawing them and then overwriting them (what it did before), timed
side by side.

Both ways are first checked to give the same model: bitwise the same parameters and the same
random generator state (the skipped draws still advance it, so a loaded model trains exactly
as the one built with its seed and given the same weights). Then, in each of --rounds rounds,
each way loads the file once, in alternating order; times are medians over the rounds and the
speed-up is the median of the per-round quotients (on a shared machine a slow round is slow
for both).

    python bench/load_speed.py                 # 1024-2048-2048-2048-1024-10, float32, 50 MB
    python bench/load_speed.py --dtype float64 --init he_normal
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import steepest as st
from steepest import saving

WIDTHS = (1024, 2048, 2048, 2048, 1024, 10)


def load_drawing_weights(path):
    """st.load as it was: the model built with its initial weights drawn, then overwritten."""
    header, arrays = saving.read(path)
    model = st.Sequential.from_config(header, initialize=True)
    model.load_state_dict(arrays)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--init", default="torch_default")
    args = parser.parse_args()
    layers = []
    for i in range(len(WIDTHS) - 1):
        layers += [st.Dense(WIDTHS[i], WIDTHS[i + 1], init=args.init), st.ReLU()]
    model = st.Sequential(*layers[:-1], dtype=args.dtype, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        model.save(path)
        size = os.path.getsize(path)
        new, old = st.load(path), load_drawing_weights(path)
        assert new.flat_params().tobytes() == old.flat_params().tobytes() == \
            model.flat_params().tobytes()
        assert new.rng_state == old.rng_state
        times = {"without drawing": [], "drawing, then overwriting": []}
        ways = list(zip(times, (st.load, load_drawing_weights)))
        for r in range(args.rounds):
            for name, load in ways if r % 2 == 0 else ways[::-1]:
                start = time.perf_counter()
                load(path)
                times[name].append(time.perf_counter() - start)
    print(f"st.load of {'-'.join(map(str, WIDTHS))} ({args.dtype}, {args.init}): "
          f"{model.num_parameters():,} parameters, a {size / 1e6:.1f} MB file, "
          f"{args.rounds} rounds")
    for name, values in times.items():
        print(f"  {name:26s} {statistics.median(values) * 1e3:8.1f} ms")
    ratios = [a / b for a, b in zip(times["drawing, then overwriting"], times["without drawing"])]
    print(f"  speed-up {statistics.median(ratios):.2f}x (median of per-round quotients)")


if __name__ == "__main__":
    main()
