#!/usr/bin/env python3
"""A PyTorch state dict in the safetensors format, for `asymml import`
(Debian has no safetensors package; the format is simple).

    python3 scripts/save_safetensors.py MODEL.pt OUT.safetensors

MODEL.pt: what torch.save wrote, a state dict or a whole model. Or, from
Python: sys.path.insert(0, "scripts"); from save_safetensors import save_file;
save_file(model.state_dict(), "out.safetensors").

The file is: u64 little-endian length of the JSON header, the header (padded
with spaces to a multiple of 8 bytes, as the reference writer pads it), then
the tensors' bytes in the state dict's order."""
import json
import struct
import sys

import torch

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
          torch.int64: "I64", torch.int32: "I32"}


def encode(sd, metadata=None):
    """(header, data) of the file for state dict sd."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in sd.items():
        t = t.detach().cpu().contiguous()
        if t.dtype not in DTYPES:
            raise ValueError(f"{name}: dtype {t.dtype} has no safetensors name here")
        b = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    return h + b" " * (-len(h) % 8), b"".join(blobs)


def save_file(sd, path, metadata=None):
    h, data = encode(sd, metadata)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: save_safetensors.py MODEL.pt OUT.safetensors")
    obj = torch.load(argv[1], map_location="cpu", weights_only=False)
    sd = obj.state_dict() if hasattr(obj, "state_dict") else obj
    save_file(sd, argv[2])
    print(f"{argv[2]}: {len(sd)} tensors")


if __name__ == "__main__":
    main(sys.argv)
