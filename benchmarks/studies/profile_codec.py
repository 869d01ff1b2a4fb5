"""Where one encode and one decode spend their time, by part: the network in float32 (the channel
steps), the network in float64 (the reference chain the lossless record is predicted from), the
candidate scoring of the channel simulation, the lossless record, the reconstruction of lossy
prefixes, and the rest. A measurement, not a goal: it prints a table and writes nothing.

Usage:
  python -m benchmarks.studies.profile_codec --image ../shared/data/kodak/kodim23.png --crop 64 --model photo --bpp 0.5
  python -m benchmarks.studies.profile_codec --image examples/cifar10-test-0.png --model cifar10 --lossless

Each part is timed at its call boundary (wall clock, the machine's load printed beside it):
``Model.eps_fn`` by the network's dtype, ``simulate`` (encoder) and ``reconstruct`` (decoder) of
``bitstream.channel``, the lossless record's coding and decoding, and ``Chain.x0_hat`` with the
flow or ancestral pictures. The float64 copy of the network is made once per process (``in_dtype``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np


class Timers:
    """Seconds and calls per part; nested parts are not double counted by the callers used here."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)

    def wrap(self, owner, attr: str, part):
        """Replace ``owner.attr`` by a timed version; ``part`` is a name or a function of the
        call's arguments giving one."""
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            name = part(*args) if callable(part) else part
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0
                self.calls[name] += 1

        setattr(owner, attr, timed)

    def reset(self):
        self.seconds.clear()
        self.calls.clear()


def load_average() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


@contextmanager
def measured(timers: Timers, results: dict, label: str):
    timers.reset()
    before = load_average()
    t0 = time.perf_counter()
    yield
    results[label] = {"total": time.perf_counter() - t0, "parts": dict(timers.seconds), "calls": dict(timers.calls),
                      "load_before": before, "load_after": load_average()}


def install(timers: Timers) -> None:
    import torch

    import bitstream.guarded_rounding as guarded_rounding
    import bitstream.interlaced as interlaced
    from diffcodec.checkpoint import Model
    from diffcodec.codec import chain, decoder, encoder

    def network(model, *_):
        return "network float64" if model.dtype == torch.float64 else "network float32"

    timers.wrap(Model, "eps_fn", network)
    timers.wrap(Model, "in_dtype", "float64 copy of the network")
    timers.wrap(encoder, "simulate", "candidate scoring (channel simulation)")
    timers.wrap(chain, "channel_reconstruct", "candidate rebuilding (from indices)")
    timers.wrap(encoder, "_lossless_record", "lossless record")
    timers.wrap(guarded_rounding, "decode", "lossless record")
    timers.wrap(interlaced, "decode", "lossless record")
    timers.wrap(chain.Chain, "x0_hat", "reconstruction (x̂_0)")
    timers.wrap(decoder, "reconstruct", "reconstruction (flow / ancestral)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", required=True)
    ap.add_argument("--crop", type=int, default=None, help="centre crop of this size")
    ap.add_argument("--model", default="auto")
    stop = ap.add_mutually_exclusive_group()
    stop.add_argument("--bpp", type=float, default=None)
    stop.add_argument("--lossless", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (numba: NUMBA_NUM_THREADS)")
    args = ap.parse_args(argv)

    import torch

    from benchmarks.common.datasets import centre_crop
    from diffcodec.checkpoint import load_model
    from diffcodec.codec import DEFAULT_STOP, CodecConfig, Stop, compress, decompress
    from diffcodec.images import CodecImage, ImageMode, load_image
    from diffcodec.models import resolve_model_name

    torch.set_num_threads(args.threads)
    image = load_image(Path(args.image)).image
    if args.crop:
        image = CodecImage(np.ascontiguousarray(centre_crop(image.rgb, args.crop)), ImageMode.RGB)
    name = resolve_model_name(args.model, image.width, image.height)
    timers = Timers()
    install(timers)
    results: dict = {}
    t0 = time.perf_counter()
    model = load_model(name)
    load_s = time.perf_counter() - t0
    stop_rule = Stop() if args.lossless else (Stop(bpp=args.bpp) if args.bpp else DEFAULT_STOP)
    with measured(timers, results, "encode"):
        encoded = compress(image, model, CodecConfig(), stop_rule)
    with measured(timers, results, "decode"):
        decoded = decompress(encoded.data, model)
    st = encoded.stats.to_dict()
    print(f"{image.width}×{image.height} with {name} ({model.weights_sha256[:12]}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; model load {load_s:.2f} s")
    print(f"file {st['file_bytes']} bytes, {st['bpp']:.3f} bpp, decoded to t = {decoded.t}"
          + (f", exact: {decoded.exact}" if decoded.t == 0 else ""))
    for label, r in results.items():
        print(f"\n{label}: {r['total']:.2f} s (load average before {r['load_before']}, after {r['load_after']})")
        rest = r["total"] - sum(r["parts"].values())
        for part, seconds in sorted(r["parts"].items(), key=lambda kv: -kv[1]):
            print(f"  {part:42} {seconds:8.2f} s {100 * seconds / r['total']:5.1f} %  ({r['calls'][part]} calls)")
        print(f"  {'rest (priors, KL, chunking, range coding, …)':42} {rest:8.2f} s {100 * rest / r['total']:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
