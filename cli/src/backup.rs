//! `dta backup create | verify | restore`: a node's home as one encrypted archive (see
//! `dta_node::backup`). `create` asks a running node for a checkpoint of its database through
//! its API (the home's `node.json` and token), or makes one itself when the node is stopped;
//! either way it reads the copy from disk, seals the archive and removes the copy.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use dta_node::backup::{self, BackupError, KeystoreNeeds, Manifest};
use dta_node::client::Method;

use crate::client::ClientArgs;
use crate::output::outln;

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Write one encrypted archive of a node's home (running or stopped): its database, config
    /// and keys. Secrets stay wrapped by the node's keystore. The passphrase comes from
    /// --passphrase-file, else DTA_BACKUP_PASSPHRASE.
    Create {
        /// Where to write the archive (it must not exist).
        #[arg(long)]
        out: PathBuf,
        /// A file holding the backup passphrase (at least 12 characters).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check an archive without restoring it: checksum, passphrase, contents, and that its
    /// database opens and holds what it says.
    Verify {
        /// The archive.
        file: PathBuf,
        /// A file holding the backup passphrase.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore an archive into a new home: the same identity, orders, shares and logs. A
    /// home that exists is refused.
    Restore {
        /// The archive.
        file: PathBuf,
        /// The new home (it must not exist).
        #[arg(long)]
        home: PathBuf,
        /// A file holding the backup passphrase.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Removes a checkpoint directory when dropped, whatever happened.
struct Checkpoint(PathBuf);

impl Drop for Checkpoint {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A checkpoint of `home`'s database: made here when the node is stopped, else by the node.
async fn checkpoint(home: &Path, client: &ClientArgs) -> anyhow::Result<Checkpoint> {
    let db = home.join("db");
    if !db.is_dir() {
        anyhow::bail!("{} is not a node home (no db)", home.display());
    }
    let stopped = {
        let home = home.to_owned();
        tokio::task::spawn_blocking(move || backup::checkpoint_stopped(&home)).await?
    };
    match stopped {
        Ok(path) => Ok(Checkpoint(path)),
        // The node runs: it holds the database, and makes the copy itself.
        Err(BackupError::Running) => {
            let answer = client
                .client()?
                .call(Method::POST, "/v2/backup/checkpoint", None)
                .await?;
            if !answer.is_success() {
                anyhow::bail!(
                    "the running node made no checkpoint: {} {}",
                    answer.status_line(),
                    answer.body["error"].as_str().unwrap_or_default()
                );
            }
            let path = answer.body["path"]
                .as_str()
                .context("the node's answer names no checkpoint")?;
            Ok(Checkpoint(PathBuf::from(path)))
        }
        Err(err) => Err(err.into()),
    }
}

fn summary(manifest: &Manifest) -> String {
    let keystore = match &manifest.keystore {
        KeystoreNeeds::Soft => "the soft keystore's passphrase".to_owned(),
        KeystoreNeeds::Pkcs11 {
            module,
            token,
            key_label,
        } => format!("key {key_label:?} on PKCS#11 token {token:?} ({module})"),
    };
    format!(
        "node {} ({}), identity {}\n  {} orders, {} wrapped secrets, {} blocks; {} files, {} bytes\n  \
         made {} by {}\n  its secrets open with {keystore}",
        manifest.name,
        manifest.peer_id,
        manifest.identity,
        manifest.orders,
        manifest.secrets,
        manifest.blocks,
        manifest.files,
        manifest.bytes,
        manifest.created_ms,
        manifest.made_by,
    )
}

fn read_backup(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

pub async fn run(command: BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::Create {
            out,
            passphrase_file,
            client,
        } => {
            let passphrase = backup::passphrase(passphrase_file.as_deref())?;
            let home = client
                .home_dir()
                .context("name the node's home: --home DIR (or DTA_HOME)")?
                .to_owned();
            if out.exists() {
                anyhow::bail!(
                    "{} exists; a backup is written to a new file",
                    out.display()
                );
            }
            let checkpoint = checkpoint(&home, &client).await?;
            let copy = checkpoint.0.clone();
            let (archive, manifest) =
                tokio::task::spawn_blocking(move || backup::create(&home, &copy, &passphrase))
                    .await??;
            drop(checkpoint);
            dta_node::private::write_private_file(&out, &archive)
                .with_context(|| format!("cannot write {}", out.display()))?;
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&manifest)?);
            } else {
                outln!("backup {} written: {}", out.display(), summary(&manifest));
            }
        }
        BackupCommand::Verify {
            file,
            passphrase_file,
            json,
        } => {
            let passphrase = backup::passphrase(passphrase_file.as_deref())?;
            let bytes = read_backup(&file)?;
            let manifest =
                tokio::task::spawn_blocking(move || backup::verify(&bytes, &passphrase)).await??;
            if json {
                outln!("{}", serde_json::to_string_pretty(&manifest)?);
            } else {
                outln!("backup {} is sound: {}", file.display(), summary(&manifest));
            }
        }
        BackupCommand::Restore {
            file,
            home,
            passphrase_file,
            json,
        } => {
            if home.exists() {
                return Err(BackupError::Exists(home.display().to_string()).into());
            }
            let passphrase = backup::passphrase(passphrase_file.as_deref())?;
            let bytes = read_backup(&file)?;
            let into = home.clone();
            let manifest =
                tokio::task::spawn_blocking(move || backup::restore(&bytes, &passphrase, &into))
                    .await??;
            if json {
                outln!("{}", serde_json::to_string_pretty(&manifest)?);
            } else {
                outln!(
                    "restored into {}: {}\n  start it with dta run --home {}",
                    home.display(),
                    summary(&manifest),
                    home.display()
                );
            }
        }
    }
    Ok(())
}
