#!/usr/bin/env python3
"""Seeds for the `sasl_scram`, `sasl_plain` and `sasl_oauthbearer` fuzz targets: the RFC 7677
SCRAM-SHA-256 exchange (under each knob), PLAIN messages, and OAUTHBEARER client messages with
unsecured tokens valid, expired and short of scope at the seed's clock.
Usage: fuzz/seed_sasl.py fuzz/corpus   (writes fuzz/corpus/sasl_*/)"""

import base64
import json
import struct
import sys
from pathlib import Path

RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

NOW_MS = 1_700_000_000_000


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def token(claims: dict) -> bytes:
    return b64url(b'{"alg":"none"}') + b"." + b64url(json.dumps(claims).encode()) + b"."


def initial(tok: bytes, authzid: bytes = b"") -> bytes:
    a = b"a=" + authzid if authzid else b""
    return b"n," + a + b",\x01auth=Bearer " + tok + b"\x01\x01"


def scram_seeds():
    nul = b"\x00"
    rfc = RFC_CLIENT_FIRST + nul + RFC_CLIENT_FINAL + nul + RFC_SERVER_FIRST + nul + RFC_SERVER_FINAL
    # Our client's nonce is "cnonce": a server-first it accepts.
    ours = (b"n,a=user,n=user,r=abc,ext=1" + nul + b"c=biws,r=abcsnonce,p=AAAA" + nul
            + b"r=cnonceXYZ,s=AAECAwQ=,i=4096" + nul + b"e=invalid-proof")
    for knob in (0x00, 0x02, 0x04, 0x06, 0x12, 0x13):
        yield f"rfc-knob-{knob:02x}", bytes([knob]) + rfc
        yield f"ours-knob-{knob:02x}", bytes([knob]) + ours


def plain_seeds():
    yield "genuine", b"\x00alice\x00pw"
    yield "genuine-authzid", b"alice\x00alice\x00pw"
    yield "wrong-password", b"\x00alice\x00nope"
    yield "authzid-mismatch", b"bob\x00alice\x00pw"
    yield "unknown", b"\x00mallory\x00pw"


def oauth_seeds():
    clock = struct.pack("<q", NOW_MS << 14)
    now_s = NOW_MS / 1000
    valid = token({"sub": "alice", "iat": now_s - 1, "exp": now_s + 3600, "scope": "kafka read"})
    listed = token({"sub": "alice", "exp": now_s + 3600, "scope": ["kafka"]})
    expired = token({"sub": "alice", "exp": now_s - 3600, "scope": "kafka"})
    no_scope = token({"sub": "alice", "exp": now_s + 3600})
    yield "valid", clock + initial(valid)
    yield "valid-authzid", clock + initial(listed, b"alice")
    yield "authzid-mismatch", clock + initial(valid, b"bob")
    yield "expired-then-ack", clock + initial(expired) + b"\x00\x01"
    yield "no-scope-then-retry", clock + initial(no_scope) + b"\x00" + initial(valid)
    yield "extensions", clock + b"n,,\x01host=kafka\x01auth=Bearer " + valid + b"\x01port=9092\x01\x01"
    yield "claims-json", clock + json.dumps({"sub": "a", "exp": now_s + 60, "scope": ["kafka"]}).encode()
    yield "bare-token", clock + valid


def main():
    root = Path(sys.argv[1])
    for target, seeds in (("sasl_scram", scram_seeds()), ("sasl_plain", plain_seeds()),
                          ("sasl_oauthbearer", oauth_seeds())):
        d = root / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in seeds:
            (d / f"seed-{name}").write_bytes(data)


if __name__ == "__main__":
    main()
