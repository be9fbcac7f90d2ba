//! `dta`: the command-line front of a dta node. Thin by design: it parses arguments and calls
//! the libraries (`dta-node`, `dta-testnet`), which hold all the logic.

use anyhow::Context;
use clap::{Parser, Subcommand};

/// dta: a peer-to-peer Decentralized Trust Authority.
#[derive(Debug, Parser)]
#[command(name = "dta", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Walk one custody order end to end: deal 2-of-3, certify, lose a fiduciary, release,
    /// rebuild, audit.
    Demo {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { json } => {
            let report = dta_testnet::demo::run().context("the demo failed")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            if !(report.secret_recovered && report.audit_passed) {
                anyhow::bail!("the demo finished but did not recover and audit the secret");
            }
        }
    }
    Ok(())
}
