#!/usr/bin/env python3
"""Writes small, valid GGUF seed files for fuzz_gguf into fuzz/corpus/gguf/ (stdlib only)."""
import os
import struct
import sys

def s(x: str) -> bytes:
    b = x.encode()
    return struct.pack("<Q", len(b)) + b

def kv(key, vtype, payload):
    return s(key) + struct.pack("<I", vtype) + payload

def gguf(version, kvs, tensors, alignment=32):
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs)
    data = b""
    infos = b""
    for name, ne, ttype, raw in tensors:
        off = len(data)
        infos += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", ttype, off)
        data += raw + b"\0" * ((-len(raw)) % alignment)
    out += infos
    out += b"\0" * ((-len(out)) % alignment)
    return out + data

def main(dest):
    os.makedirs(dest, exist_ok=True)
    f32 = struct.pack("<8f", *[0.5 * i for i in range(8)])
    q4_0 = struct.pack("<e", 0.25) + bytes(range(16))
    seeds = {
        "empty_v3.gguf": gguf(3, [], []),
        "scalars_v2.gguf": gguf(2, [
            kv("general.architecture", 8, s("llama")),
            kv("u8", 0, struct.pack("<B", 7)), kv("i8", 1, struct.pack("<b", -7)),
            kv("u16", 2, struct.pack("<H", 700)), kv("i16", 3, struct.pack("<h", -700)),
            kv("u32", 4, struct.pack("<I", 70000)), kv("i32", 5, struct.pack("<i", -70000)),
            kv("f32", 6, struct.pack("<f", 1.5)), kv("bool", 7, b"\x01"),
            kv("u64", 10, struct.pack("<Q", 1 << 40)), kv("i64", 11, struct.pack("<q", -(1 << 40))),
            kv("f64", 12, struct.pack("<d", 2.25)),
        ], []),
        "arrays_v3.gguf": gguf(3, [
            kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + s("<unk>") + s("a") + s("b")),
            kv("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, 3) + struct.pack("<3f", 0, -1, -2)),
            kv("nested", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 2) + struct.pack("<2I", 1, 2)),
        ], []),
        "tensors_v3.gguf": gguf(3, [kv("general.alignment", 4, struct.pack("<I", 32))], [
            ("w.f32", [8], 0, f32), ("w.q4_0", [32], 2, q4_0), ("m", [4, 2], 0, f32),
        ]),
    }
    for name, data in seeds.items():
        with open(os.path.join(dest, name), "wb") as fh:
            fh.write(data)

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "gguf"))
