"""Owner state as bytes, for migration between workers (Ray object store) and spill (host/store).

Layout: 4-byte little-endian header length, a msgpack header (owner, version, position, token log,
request, tensor table: name, dtype, shape, offset, nbytes; crc32 of the body), then the raw tensor
bytes. The header alone says what the payload is; the checksum catches torn or mixed payloads.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import msgpack
import torch

from rwttt_ray.ttt.sampling import Request

_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float32, torch.bfloat16, torch.float16, torch.float64)}


class StateFormatError(ValueError):
    """A payload that is not a valid owner state (bad header, checksum, or shapes)."""


@dataclass
class OwnerSnapshot:
    """Everything a worker needs to continue an owner exactly where it stopped."""

    request: Request
    version: int                       # committed WRITEs
    pos: int                           # tokens fed (KV length)
    generated: list[int]
    done: bool
    tensors: dict[str, torch.Tensor]   # "k.{l}", "v.{l}", "x.{t}", "s.{t}", "dw.{t}" (dW^T slot)


def _to_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def dumps(snap: OwnerSnapshot) -> bytes:
    table, chunks, offset = [], [], 0
    for name, t in snap.tensors.items():
        data = _to_bytes(t)
        table.append([name, str(t.dtype).removeprefix("torch."), list(t.shape), offset, len(data)])
        chunks.append(data)
        offset += len(data)
    body = b"".join(chunks)
    header = msgpack.packb({"owner_id": snap.request.owner_id, "request": snap.request.to_dict(), "version": snap.version,
                            "pos": snap.pos, "generated": snap.generated, "done": snap.done, "tensors": table,
                            "crc32": zlib.crc32(body)})
    return struct.pack("<I", len(header)) + header + body


def read_header(blob: bytes) -> dict:
    if len(blob) < 4:
        raise StateFormatError("payload too short")
    (n,) = struct.unpack_from("<I", blob)
    try:
        return msgpack.unpackb(blob[4:4 + n])
    except Exception as exc:
        raise StateFormatError(f"bad state header: {exc}") from None


def loads(blob: bytes) -> OwnerSnapshot:
    header = read_header(blob)
    body = memoryview(blob)[4 + struct.unpack_from("<I", blob)[0]:]
    if zlib.crc32(body) != header["crc32"]:
        raise StateFormatError(f"checksum mismatch in state of owner {header.get('owner_id')}")
    tensors = {}
    for name, dtype, shape, offset, nbytes in header["tensors"]:
        raw = bytearray(body[offset:offset + nbytes])
        flat = torch.frombuffer(raw, dtype=torch.uint8) if nbytes else torch.empty(0, dtype=torch.uint8)
        tensors[name] = flat.view(_DTYPES[dtype]).reshape(shape)
    req = Request.from_dict(header["request"])
    return OwnerSnapshot(req, header["version"], header["pos"], list(header["generated"]), header["done"], tensors)
