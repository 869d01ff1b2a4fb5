"""A file decodes the same on another machine: the decoder's network arithmetic is perturbed, as
other hardware, thread counts or libraries would perturb it, and full-rate files must still
decode bit for bit while lossy prefixes move by far less than 0.05 dB.

The perturbation multiplies the output of every convolution and linear layer by 1 + 1000·u·z
(z ~ N(0, 1) fresh per element and call, u the unit roundoff of the dtype the layer computes in),
inside the network's own arithmetic: the lossless record's reference chain computes in float64,
the lossy prefixes in float32.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bitstream.container import pack, unpack
from diffcodec.checkpoint import load_model
from diffcodec.codec import CodecConfig, Stop, compress, decompress
from diffcodec.codec.chain import REFERENCE_DTYPE
from helpers import cifar_image, kodak_crop, needs_data, perturbed

CHEAP = CodecConfig(groups=12, log2_candidates=6, chunk_bits=2.0)  # full rate: t_stop 20


@pytest.fixture(scope="module")
def model():
    m = load_model("default")
    m.in_dtype(REFERENCE_DTYPE)  # the float64 twin exists before hooks are placed on it
    return m


def _psnr(a, b) -> float:
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _images():
    return {"cifar-3": cifar_image(3), "cifar-7": cifar_image(7), "kodak-crop": kodak_crop(40, 52)}


@needs_data
@pytest.mark.parametrize("name", ["cifar-3", "cifar-7", "kodak-crop"])
def test_full_rate_files_decode_bit_for_bit_under_perturbed_arithmetic(model, name):
    image = _images()[name]
    data = compress(image, model, CHEAP, Stop()).data
    with perturbed(model) as calls:
        out = decompress(data, model)
    assert calls[0] > 0  # the hooks ran
    assert out.t == 0 and out.exact is True and np.array_equal(out.image.rgb, image.rgb)


@needs_data
def test_the_perturbation_moves_the_chain(model):
    """The same perturbation really changes what the network computes: the decoded chain states
    differ from the unperturbed ones (so the test above is not vacuous)."""
    data = compress(cifar_image(3), model, CHEAP, Stop()).data
    clean = decompress(data, model, upto_t=20)
    with perturbed(model):
        moved = decompress(data, model, upto_t=20)
    drift = float((moved.x_t - clean.x_t).abs().max())
    assert drift > 1e-6


@needs_data
def test_lossy_prefixes_stay_within_five_hundredths_of_a_db(model):
    image = cifar_image(7)
    data = compress(image, model, CHEAP, Stop()).data
    for upto_t in (200, 50, 20):
        clean = decompress(data, model, upto_t=upto_t)
        with perturbed(model, seed=upto_t):
            moved = decompress(data, model, upto_t=upto_t)
        assert clean.t == moved.t
        assert abs(_psnr(moved.image.rgb, image.rgb) - _psnr(clean.image.rgb, image.rgb)) <= 0.05


@needs_data
def test_a_lossless_record_that_does_not_match_is_reported(model):
    """A lossless record whose pixel check fails (here: a forged check value) decodes, and says so."""
    image = cifar_image(3)
    data = compress(image, model, CHEAP, Stop()).data
    u = unpack(data)
    forged = bytes([u.records[-1][0] ^ 1]) + u.records[-1][1:]
    out = decompress(pack(u.header, u.records[:-1] + [forged]), model)
    assert out.t == 0 and out.exact is False
