"""Decoding (Algorithm 4): any prefix of a file → the chain state and an image; ``describe``
reads a file's structure without a model."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from bitstream import guarded_rounding, interlaced, residual
from bitstream.container import TILED_VERSION, Damage, FormatError, Header, ImageMode, crc16, unpack
from bitstream.selection import SelectionRule

from ..checkpoint import Model, load_model
from ..images import CodecImage
from ..reconstruct import Reconstruction, reconstruct
from .chain import (
    SCHEDULES,
    Chain,
    CodecError,
    check_variance_table,
    model_hash,
    padded_size,
    prediction,
    prediction_from_rounded,
    prediction_values,
    to_uint8,
)
from .limits import DEFAULT_MAX_PIXELS, check_pixels
from ..models import shipped_model_for_hash
from .plan import make_plan
from .records import read_steps

@dataclass
class Decoded:
    image: CodecImage
    t: int  # timestep of the decoded state (0: the lossless record was decoded)
    records_used: int
    truncated: bool  # the file ended inside a record
    exact: bool | None  # lossless record: pixels match the encoder's CRC (None if not decoded)
    frames: list = field(default_factory=list)  # (t, CodecImage) at each record, if asked
    x_t: torch.Tensor | None = None  # the chain state at t (padded size, [−1, 1] scale), t > 0
    records_available: int = 0  # complete records in the data (with salvage: the intact ones)
    damage: Damage | None = None  # with salvage: the corrupt record the decode stopped before


def read_header(data: bytes) -> Header:
    try:
        return Header.from_bytes(bytes(data))[0]
    except FormatError as e:
        raise CodecError(str(e)) from None


def plan_of(header: Header, num_timesteps: int):
    """The header's step plan (FORMAT.md §5); a CodecError for an end_t the schedule cannot have."""
    try:
        return make_plan(num_timesteps, header.t_stop, header.groups, header.layout, header.end_t)
    except ValueError as e:
        raise CodecError(f"the header's step plan is invalid ({e})") from None


def check_model(header: Header, model: Model) -> None:
    if header.model_hash != model_hash(model):
        raise CodecError(f"the file was made with model {header.model_hash.hex()}…, not with "
                         f"'{model.name}' ({model.weights_sha256[:8]}…); pass the right --model")
    if SCHEDULES.get(header.schedule_id) != model.schedule_config:
        raise CodecError(f"the file's schedule id {header.schedule_id} does not match the model's schedule")
    check_variance_table(header, model)


def model_for_file(header: Header, model: Model | str | None = None, device: str | torch.device = "cpu") -> Model:
    """The model that decodes a file: ``model`` as given (a :class:`Model`, or a shipped name or
    checkpoint folder loaded onto ``device``), else the shipped model whose hash the header names;
    checked against the header (:func:`check_model`)."""
    if model is None:
        model = shipped_model_for_hash(header.model_hash)
        if model is None:
            raise CodecError(f"no shipped model has hash {header.model_hash.hex()}…; pass the file's model "
                             f"(--model, or model= in the API)")
    loaded = model if isinstance(model, Model) else load_model(model, device)
    check_model(header, loaded)
    return loaded


@torch.no_grad()
def decompress(data: bytes, model: Model, upto_t: int | None = None,
               how: Reconstruction = Reconstruction.MEAN, *, steps: int = 50, frames: bool = False,
               progress=None, max_pixels: int | None = DEFAULT_MAX_PIXELS, salvage: bool = False) -> Decoded:
    """Decode the longest complete prefix (or up to the first record at t <= ``upto_t``).

    A corrupt record is an error; with ``salvage`` the intact records before it are decoded as
    a prefix (``Decoded.damage`` says what was left out), unless no coded record precedes it.

    ``progress(done, total)`` is called once before the first step (done = 0), after each decoded
    step and after the lossless record
    (``total``: all of those this call decodes). An image of more than ``max_pixels`` pixels
    (None: no limit) is refused from its header, before any work (``limits``)."""
    header = read_header(data)
    check_pixels(header.width, header.height, max_pixels, "decoding", model.unet_config.downsampling_factor,
                 whole=header.tile == 0)
    try:
        unpacked = unpack(data, salvage=salvage)
    except FormatError as e:
        raise CodecError(str(e)) from None
    header = unpacked.header
    check_model(header, model)
    offset = 1 if header.mode is ImageMode.RGBA else 0
    if unpacked.damage is not None and len(unpacked.records) <= offset:
        raise CodecError(f"{unpacked.damage.message}; no intact record before it to salvage")
    if header.tile != 0 and header.version < TILED_VERSION:  # reserved before version 5
        raise CodecError(f"a nonzero tile field needs format version {TILED_VERSION}, not {header.version}")
    plan = plan_of(header, model.schedule_config.num_timesteps)
    h, w = header.height, header.width
    f = model.unet_config.downsampling_factor
    records = list(unpacked.records)
    channel_records = plan.record_steps()
    stops_early = upto_t is not None and upto_t > 0 and upto_t >= plan.t_stop
    lossless = plan.lossless and len(records) - offset == len(channel_records) + 1 and not stops_early
    chain = Chain(model, header, plan, padded_size(h, w, f), reference=lossless)
    alpha = None
    if header.mode is ImageMode.RGBA:
        if not records:
            raise CodecError("the file ends before its alpha record")
        try:
            alpha = np.frombuffer(zlib.decompress(records.pop(0)), dtype=np.uint8)
        except zlib.error:
            raise CodecError("record 0 (alpha) does not decode") from None
        if alpha.size != h * w:
            raise CodecError("record 0 (alpha) has the wrong size")
        alpha = alpha.reshape(h, w)
    if len(records) > len(channel_records) + plan.lossless:
        raise CodecError(f"the file has {len(records) + offset} records, more than its plan allows")
    total = _steps_to_decode(plan, len(records), upto_t)
    done = 0
    if progress:
        progress(0, total)  # the total before the first network pass
    x = chain.x_T()
    t_now = plan.boundaries[0]
    eps = chain.eps(x, t_now)
    out_frames = []
    used = 0

    def show(x, t, eps) -> CodecImage:
        if how is Reconstruction.MEAN:
            x0 = chain.x0_hat(x, t, eps)
        else:
            x0 = reconstruct(chain.full_schedule, chain.eps_fn, x, t, how, steps=steps, seed=header.seed)
        return _image(to_uint8(x0, h, w), header.mode, alpha)

    level = 0
    for r, payload in enumerate(records[:len(channel_records)]):
        coded, level = read_steps(payload, r + offset, channel_records[r], chain, level)
        for step, t, s, step_level, indices in coded:
            x = chain.step_from_indices(x, eps, step, t, step_level, indices)
            eps = chain.eps(x, s)
            t_now = s
            done += 1
            if progress:
                progress(done, total)
        used = r + 1
        if frames:
            out_frames.append((t_now, show(x, t_now, eps)))
        if upto_t is not None and t_now <= upto_t and upto_t > 0:
            return Decoded(show(x, t_now, eps), t_now, used + offset, unpacked.truncated, None, out_frames, x,
                           len(unpacked.records), unpacked.damage)
    if len(records) == len(channel_records) + 1:
        payload = records[-1]
        where = f"record {len(records) - 1 + offset} (lossless)"
        if len(payload) < 2:
            raise CodecError(f"{where} is too short")
        check = int.from_bytes(payload[:2], "little")
        x0_hat = chain.x0_hat(x, t_now, eps)
        c = 1 if header.mode is ImageMode.L else 3
        try:
            if header.version >= 3:
                rounded, list_bytes = guarded_rounding.decode(payload[2:], prediction_values(x0_hat, h, w))
                pred = prediction_from_rounded(rounded, header.mode)
                r = interlaced.decode(payload[2 + list_bytes:], c, h, w).flatten()
            else:
                pred = prediction(x0_hat, h, w, header.mode)
                if header.version == 1:  # colour-plane prediction only (FORMAT.md §7.2)
                    r = residual.decode_planes(payload[2:], c, h * w).flatten()
                else:
                    r = interlaced.decode(payload[2:], c, h, w, portable=False).flatten()
        except (AssertionError, ValueError, KeyError) as e:
            raise CodecError(f"{where} does not decode ({e})") from None
        pixels = np.clip(pred + r, 0, 255).astype(np.uint8)
        planes = pixels.reshape(c, h, w).transpose(1, 2, 0)
        rgb = np.ascontiguousarray(np.repeat(planes, 3, axis=2) if c == 1 else planes)
        image = _image(rgb, header.mode, alpha)
        exact = crc16(rgb.tobytes()) == check
        if progress:
            progress(total, total)
        if frames:
            out_frames.append((0, image))
        return Decoded(image, 0, len(records) + offset, unpacked.truncated, exact, out_frames,
                       records_available=len(unpacked.records), damage=unpacked.damage)
    return Decoded(show(x, t_now, eps), t_now, used + offset, unpacked.truncated, None, out_frames, x,
                   len(unpacked.records), unpacked.damage)


def _steps_to_decode(plan, records: int, upto_t: int | None) -> int:
    """Coded steps in the first ``records`` records (alpha excluded) that a decode up to
    ``upto_t`` replays, plus one for the lossless record when it is decoded."""
    total = 0
    for r, steps in enumerate(plan.record_steps()[:records]):
        total += len(steps)
        if upto_t is not None and upto_t > 0 and plan.t_after_record(r) <= upto_t:
            return total
    return total + (records > len(plan.record_ends))


def _image(rgb: np.ndarray, mode: ImageMode, alpha) -> CodecImage:
    if mode is ImageMode.L:
        grey = rgb.astype(np.float64).mean(axis=2).round().astype(np.uint8)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
    return CodecImage(np.ascontiguousarray(rgb), mode, alpha)


def describe(data: bytes, salvage: bool = False) -> dict:
    """Header, plan and per-record sizes of a file, without a model (``diffcodec info``); with
    ``salvage``, of the intact records before a corrupt one."""
    try:
        u = unpack(data, salvage=salvage)
    except FormatError as e:
        raise CodecError(str(e)) from None
    h = u.header
    if h.schedule_id not in SCHEDULES:
        raise CodecError(f"unknown schedule id {h.schedule_id}")
    plan = plan_of(h, SCHEDULES[h.schedule_id].num_timesteps)
    labels = ["alpha (zlib)"] if h.mode is ImageMode.RGBA else []
    prev = plan.boundaries[0]
    for r in range(len(plan.record_ends)):
        labels.append(f"t {prev}→{plan.t_after_record(r)}")
        prev = plan.t_after_record(r)
    if plan.lossless:
        labels.append("lossless x_0")
    dims = 3 * h.width * h.height
    total = u.header_bytes
    records = []
    for i, size in enumerate(u.record_bytes):
        total += size
        records.append({"record": i, "content": labels[i] if i < len(labels) else "?", "bytes": size,
                        "cumulative_bits_per_dim": total * 8 / dims})
    header = {"version": data[3], "model_hash": h.model_hash.hex(), "width": h.width, "height": h.height,
              "mode": h.mode.name, "variance": h.variance.name.lower(), "layout": h.layout.name.lower(),
              "schedule_id": h.schedule_id, "t_stop": h.t_stop, "groups": h.groups, "tile": h.tile,
              "log2_candidates": h.log2_candidates, "chunk_bits": h.chunk_bits, "seed": h.seed}
    if h.variance_table:
        header["variance_table"] = h.variance_table.hex()
    if h.version >= 4:
        header["selection"] = SelectionRule.from_byte(h.selection).describe()
    if h.version >= 5:
        header["halo"] = h.halo
    if h.version >= 6:
        header["end_t"] = h.end_t
    return {"header": header, "header_bytes": u.header_bytes, "file_bytes": len(data),
            "bpp": len(data) * 8 / (h.width * h.height), "boundaries": list(plan.boundaries),
            "coded_steps": plan.num_steps, "records": records, "truncated": u.truncated}
