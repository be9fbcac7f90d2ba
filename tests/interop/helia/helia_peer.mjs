// A Helia (js-libp2p) node for dta's interop tests, driven by JSON lines on stdin.
//
// It is a light node composed by hand, not `createHelia()`: its defaults add delegated routing,
// trustless gateways and bootstrap peers that reach the internet. This one has TCP on
// 127.0.0.1 only, noise, yamux, identify and Bitswap, no routers and no peer discovery: it
// talks to the peers it is told to connect to and to nobody else.
//
// Commands (one JSON object per line; one answer per line on stdout):
//   {"op": "start"}                                    -> {"peer_id", "addr"}
//   {"op": "connect", "addr": MULTIADDR}               -> {"ok"}
//   {"op": "put_block", "codec": N, "hex": H, "version": 0|1} -> {"cid"}
//                                           (CIDv0 only for dag-pb, 0x70; the default is v1)
//   {"op": "fetch", "cid": C, "timeout": S}            -> {"hex"} or {"error"}
//   {"op": "corrupt", "cid": C, "hex": H}              -> {"ok"}  (stores other bytes under C)
//   {"op": "walk", "cid": C, "timeout": S}             -> {"cids"} (every block reachable from C
//                                                         through DAG-CBOR links, fetched)
//   {"op": "quit"}

import readline from 'node:readline'

// Node 20 lacks Promise.withResolvers, which js-libp2p uses.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { createHeliaLight } = await import('helia')
const { withLibp2pLight } = await import('@helia/libp2p')
const { withBitswap } = await import('@helia/bitswap')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { multiaddr } = await import('@multiformats/multiaddr')
const { MemoryBlockstore } = await import('blockstore-core')
const { MemoryDatastore } = await import('datastore-core')
const { CID } = await import('multiformats/cid')
const { sha256 } = await import('multiformats/hashes/sha2')
const dagCbor = await import('@ipld/dag-cbor')

// Kept apart from Helia's own blockstore wrapper so "corrupt" can store bytes that do not
// match their CID: Bitswap serves what the store holds.
const blocks = new MemoryBlockstore()
let helia = null

const hex = (bytes) => Buffer.from(bytes).toString('hex')
const unhex = (text) => new Uint8Array(Buffer.from(text, 'hex'))

async function collect (chunks) {
  const parts = []
  for await (const chunk of chunks) parts.push(chunk)
  return new Uint8Array(Buffer.concat(parts))
}

const commands = {
  async start () {
    helia = withBitswap(withLibp2pLight(createHeliaLight({
      blockstore: blocks,
      datastore: new MemoryDatastore(),
      routers: []
    }), {
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() },
      // Only the peers a test names: never dial anything it was merely told about.
      connectionGater: { denyDialMultiaddr: (ma) => !ma.toString().startsWith('/ip4/127.') }
    }))
    await helia.start()
    const addr = helia.libp2p.getMultiaddrs().find((ma) => ma.toString().startsWith('/ip4/127.0.0.1/tcp/'))
    return { peer_id: helia.libp2p.peerId.toString(), addr: addr.toString() }
  },
  async connect ({ addr }) {
    await helia.libp2p.dial(multiaddr(addr))
    return { ok: true }
  },
  async put_block ({ codec, hex: body, version }) {
    const bytes = unhex(body)
    const digest = await sha256.digest(bytes)
    const cid = version === 0 ? CID.createV0(digest) : CID.createV1(codec, digest)
    await helia.blockstore.put(cid, bytes)
    return { cid: cid.toString() }
  },
  async fetch ({ cid, timeout }) {
    const signal = AbortSignal.timeout((timeout ?? 30) * 1000)
    const bytes = await collect(helia.blockstore.get(CID.parse(cid), { signal }))
    return { hex: hex(bytes) }
  },
  async walk ({ cid, timeout }) {
    const signal = AbortSignal.timeout((timeout ?? 30) * 1000)
    const seen = new Set([cid])
    const queue = [CID.parse(cid)]
    while (queue.length > 0) {
      const next = queue.shift()
      const bytes = await collect(helia.blockstore.get(next, { signal }))
      if (next.code !== dagCbor.code) continue
      const pending = [dagCbor.decode(bytes)]
      while (pending.length > 0) {
        const value = pending.pop()
        const link = CID.asCID(value)
        if (link != null) {
          if (!seen.has(link.toString())) {
            seen.add(link.toString())
            queue.push(link)
          }
        } else if (value instanceof Uint8Array) {
          // bytes hold no links
        } else if (Array.isArray(value)) {
          pending.push(...value)
        } else if (value != null && typeof value === 'object') {
          pending.push(...Object.values(value))
        }
      }
    }
    return { cids: [...seen] }
  },
  async corrupt ({ cid, hex: body }) {
    await blocks.put(CID.parse(cid), unhex(body))
    return { ok: true }
  },
  async quit () {
    if (helia != null) await helia.stop()
    process.exit(0)
  }
}

const lines = readline.createInterface({ input: process.stdin })
for await (const line of lines) {
  let answer
  try {
    const command = JSON.parse(line)
    const run = commands[command.op]
    answer = run == null ? { error: `unknown op ${command.op}` } : await run(command)
  } catch (error) {
    answer = { error: String(error?.message ?? error) }
  }
  process.stdout.write(JSON.stringify(answer) + '\n')
}
if (helia != null) await helia.stop()
process.exit(0)
