"""The lazy API's dask graph on a large scene: its size and the time to build it.

A 20000 x 20000 PAN with a 5000 x 5000 x 4 MS (ratio 4), written as sparse GeoTIFFs
(no pixel is stored or read: the graph is built from headers, the bit depth given), and
``pansharp.fuse(pan, ms, method=M, bit_depth=11)``. Reported: the number of tasks and
chunks, the seconds of the call split into the prepare phase (``tiling.fuse.prepare_run``:
the scene opened, its facts decided, the method prepared) and the graph's construction
(the rest of the call), best of ``--repeat``. The peer is the prepare phase itself, which
``pansharp fuse`` runs too: the ratio graph / prepare says what the laziness costs.
Usage: ``python3 benchmarks/api_graph.py [--side 20000] [-m brovey] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rasterio  # noqa: E402
from affine import Affine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", type=int, default=20000)
    ap.add_argument("-m", "--method", default="brovey")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    import pansharp
    import tiling.fuse as tf

    with tempfile.TemporaryDirectory() as tmp:
        t = Affine(0.5, 0, 500000.0, 0, -0.5, 5000000.0)
        files = {}
        for name, n, count, tr in (
            ("pan", args.side, 1, t),
            ("ms", args.side // 4, 4, t @ Affine.scale(4)),
        ):
            files[name] = str(Path(tmp) / f"{name}.tif")
            with rasterio.open(files[name], "w", driver="GTiff", width=n, height=n, count=count,
                               dtype="uint16", crs="EPSG:32631", transform=tr, tiled=True,
                               sparse_ok=True):  # fmt: skip
                pass
        real = tf.prepare_run
        spent = []

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return real(*a, **k)
            finally:
                spent.append(time.perf_counter() - t0)

        import pansharp.lazy as lazy

        lazy.prepare_run = timed
        best = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            da = pansharp.fuse(files["pan"], [files["ms"]], method=args.method, bit_depth=11)
            total = time.perf_counter() - t0
            prep = spent[-1]
            if best is None or total < best[0]:
                best = (total, prep, da)
        total, prep, da = best
        print(json.dumps({
            "side": args.side, "method": args.method,
            "tasks": len(da.data.__dask_graph__()), "chunks": len(da.chunks[1]),
            "call_s": round(total, 4), "prepare_s": round(prep, 4),
            "graph_s": round(total - prep, 4),
            "graph_vs_prepare": round((total - prep) / prep, 3),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
