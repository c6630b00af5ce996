"""Where st.load's time goes for a 50 MB model: reading the file, building the model (the core
allocates zeroed parameter and gradient buffers and draws initial weights), copying the
read weights in; and st.load as a whole. Medians over --rounds rounds.

    python bench/load_speed.py                 # 1024-2048-2048-2048-1024-10, float32, 50 MB
    python bench/load_speed.py --dtype float64 --init he_normal
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import steepest as st
from steepest import saving

WIDTHS = (1024, 2048, 2048, 2048, 1024, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--init", default="torch_default")
    args = parser.parse_args()
    layers = []
    for i in range(len(WIDTHS) - 1):
        layers += [st.Dense(WIDTHS[i], WIDTHS[i + 1], init=args.init), st.ReLU()]
    model = st.Sequential(*layers[:-1], dtype=args.dtype, seed=0)
    times: dict[str, list[float]] = {"read the file": [], "build the model": [],
                                     "copy the weights in": [], "st.load": []}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        model.save(path)
        size = os.path.getsize(path)
        assert st.load(path).flat_params().tobytes() == model.flat_params().tobytes()
        for _ in range(args.rounds):
            start = time.perf_counter()
            header, arrays = saving.read(path)
            read = time.perf_counter()
            loaded = st.Sequential.from_config(header)
            built = time.perf_counter()
            loaded.load_state_dict(arrays)
            copied = time.perf_counter()
            del loaded, arrays
            times["read the file"].append(read - start)
            times["build the model"].append(built - read)
            times["copy the weights in"].append(copied - built)
            start = time.perf_counter()
            st.load(path)
            times["st.load"].append(time.perf_counter() - start)
    print(f"st.load of {'-'.join(map(str, WIDTHS))} ({args.dtype}, {args.init}): "
          f"{model.num_parameters():,} parameters, a {size / 1e6:.1f} MB file, medians of "
          f"{args.rounds} rounds")
    for name, values in times.items():
        print(f"  {name:20s} {statistics.median(values) * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
