#!/usr/bin/env python3
"""Writes each fuzz target's seed corpus from the byte-exact vectors.

Every string in the target's vector files becomes a seed: hex strings as
their bytes, other strings as their text. Targets whose input starts with
a protocol version byte get each seed twice, for the oldest and the newest
SMP version. Run from fuzz/: `python3 seed-corpus.py`.
"""
import hashlib
import json
import os
import re

HEX = re.compile(r"^(?:[0-9a-f]{2})+$")
SOURCES = {
    "smp_command": ["smp/transmissions.json", "smp/proxy.json", "smp/new_ids.json", "smp/simplego-v7.json"],
    "smp_response": ["smp/transmissions.json", "smp/errors.json", "smp/new_ids.json", "smp/proxy.json"],
    "smp_transmission": ["smp/transmissions.json", "smp/simplego-v7.json", "smp/errors.json"],
    "smp_handshake": ["smp/handshake.json"],
    "smp_block_crypto": ["smp/block_encryption.json"],
    "xftp_command": ["xftp/commands.json", "xftp/fget.json"],
    "xftp_response": ["xftp/responses.json", "xftp/fget.json"],
    "xftp_transmission": ["xftp/commands.json", "xftp/responses.json"],
    "xftp_handshake": ["xftp/handshake.json"],
    "file_description": ["xftp/descriptions.json"],
    "addresses": ["xftp/addresses.json", "agent/uris.json"],
    "ini": [],
    "store_logs": ["smp/store_log.json"],
    "agent": ["agent/envelopes.json", "agent/ratchet.json", "agent/flow.json"],
    "chat": ["agent/chat.json"],
    "device_records": [],
}
VERSIONED = {"smp_command": [0, 12], "smp_response": [0, 12], "smp_transmission": [0, 12]}
MAX_SEEDS = 60
MAX_LEN = 20_000


def strings(x):
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from strings(v)


def seeds_of(files):
    out = []
    seen = set()
    for f in files:
        with open(os.path.join("..", "vectors", f)) as fh:
            data = json.load(fh)
        for s in strings(data):
            b = bytes.fromhex(s) if HEX.match(s) else s.encode()
            if 0 < len(b) <= MAX_LEN and b not in seen:
                seen.add(b)
                out.append(b)
    # Capped evenly across lengths: short fields and whole blocks both stay.
    out.sort(key=len)
    if len(out) > MAX_SEEDS:
        step = len(out) / MAX_SEEDS
        out = [out[int(i * step)] for i in range(MAX_SEEDS)]
    return out


def device_seeds():
    """One well-formed journal slot, data-file header and card marker
    (their MACs are set by the target itself)."""
    journal = b"SGJ1" + (7).to_bytes(8, "big") + bytes([1, 0, 0, 0]) + (3).to_bytes(4, "big")
    header = (b"SGF1" + bytes([1, 1]) + (4096).to_bytes(2, "big") + bytes(range(16)) + bytes(32)
              + (0).to_bytes(4, "big") + (2 * 262144).to_bytes(8, "big") + bytes([1, 0, 0, 0])
              + (262144).to_bytes(4, "big") + (2).to_bytes(4, "big"))
    marker = b"SGC1" + bytes(range(16)) + (0).to_bytes(4, "big")
    return [s + bytes(512 - len(s)) for s in (journal, header, marker)]


def main():
    for target, files in SOURCES.items():
        d = os.path.join("corpus", target)
        # Generated seeds are rewritten; inputs the fuzzer found stay.
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if not f.startswith("regression-"):
                os.remove(os.path.join(d, f))
        seeds = seeds_of(files)
        if target == "ini":
            for name in ("xftp-server.ini", "smp-server.ini"):
                with open(os.path.join("seeds", name), "rb") as fh:
                    seeds.append(fh.read())
        if target == "device_records":
            seeds.extend(device_seeds())
        prefixes = VERSIONED.get(target, [None])
        n = 0
        for s in seeds:
            for p in prefixes:
                b = s if p is None else bytes([p]) + s
                name = hashlib.sha1(b).hexdigest()
                with open(os.path.join(d, name), "wb") as fh:
                    fh.write(b)
                n += 1
        print(f"{target}: {n} seeds")


if __name__ == "__main__":
    main()
