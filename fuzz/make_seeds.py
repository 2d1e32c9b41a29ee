#!/usr/bin/env python3
"""Writes small, valid seed files for the fuzzers into fuzz/corpus/<target>/ (stdlib only)."""
import json
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

def safetensors(tensors, metadata=None):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data

def tokenizer_json(model, normalizer=None, pre=None, decoder=None, post=None, added=()):
    return json.dumps({"version": "1.0", "added_tokens": list(added), "normalizer": normalizer,
                       "pre_tokenizer": pre, "post_processor": post, "decoder": decoder,
                       "model": model}).encode()

def write_all(dest, seeds):
    os.makedirs(dest, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(dest, name), "wb") as fh:
            fh.write(data)

def main(corpus):
    f32 = struct.pack("<4f", 1, 2, 3, 4)
    write_all(os.path.join(corpus, "safetensors"), {
        "empty.safetensors": safetensors([]),
        "f32.safetensors": safetensors([("w", "F32", [2, 2], f32)], {"format": "pt"}),
        "mixed.safetensors": safetensors([("a", "F16", [2], b"\0<\0<"), ("b", "BF16", [1, 2], b"\x80?\x80?"),
                                          ("c", "I8", [3], b"\x01\x02\x03")]),
    })
    vocab = {"<unk>": 0, "a": 1, "b": 2, "ab": 3, "\u0120": 4, "\u0120a": 5}
    bpe = {"type": "BPE", "vocab": vocab, "merges": ["a b", "\u0120 a"], "unk_token": "<unk>"}
    write_all(os.path.join(corpus, "tokenizer_json"), {
        "bytelevel.json": tokenizer_json(bpe, pre={"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
                                         decoder={"type": "ByteLevel"}),
        "spm_style.json": tokenizer_json(
            dict(bpe, byte_fallback=True, fuse_unk=True, merges=[["a", "b"]]),
            normalizer={"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                             {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
            decoder={"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]},
            post={"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<unk>", "type_id": 0}},
                                                          {"Sequence": {"id": "A", "type_id": 0}}],
                  "pair": [], "special_tokens": {"<unk>": {"id": "<unk>", "ids": [0], "tokens": ["<unk>"]}}},
            added=[{"id": 0, "content": "<unk>", "single_word": False, "lstrip": False, "rstrip": False,
                    "normalized": False, "special": True}]),
        "split_regex.json": tokenizer_json(bpe, normalizer={"type": "NFC"},
                                           pre={"type": "Sequence", "pretokenizers": [
                                               {"type": "Split", "pattern": {"Regex": "\\s+(?!\\S)|\\p{L}+"},
                                                "behavior": "Isolated", "invert": False},
                                               {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}),
    })
    dest = os.path.join(corpus, "gguf")
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
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus"))
