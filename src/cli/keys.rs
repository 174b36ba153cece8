//! `kodo-access key …`: create a master key, re-seal every secret under the current one.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::config::Settings;
use crate::crypto::Keyring;
use crate::registry::{Registry, cli_actor};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new random 256-bit master key to a file (mode 0600; never overwrites).
    Generate {
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Re-seal every stored secret under the current master key (crypto.master_key_*),
    /// opening them with the current or a previous key; one transaction.
    Rotate,
    /// Show the current key id and how many secrets each key seals, and check that
    /// every stored secret opens with the configured keys.
    Status,
}

pub fn generate(out: &Path) -> anyhow::Result<()> {
    let id = crate::crypto::generate_key_file(out)?;
    println!("wrote master key {id} to {}", out.display());
    Ok(())
}

pub async fn execute(settings: Settings, command: &KeyCommand) -> anyhow::Result<()> {
    let keyring = Keyring::load(&settings.crypto)?;
    let pool = crate::store::connect(&settings.database).await?;
    match command {
        KeyCommand::Generate { out } => generate(out),
        KeyCommand::Rotate => {
            let registry = Registry {
                pool: &pool,
                keyring: &keyring,
                actor: cli_actor(),
            };
            let count = registry.reseal_all().await?;
            println!(
                "re-sealed {count} secret(s) under master key {}",
                keyring.current_id()
            );
            Ok(())
        }
        KeyCommand::Status => {
            let mut connection = pool.acquire().await?;
            let counts = crate::store::credentials::count_by_seal_key(&mut connection).await?;
            println!("current master key: {}", keyring.current_id());
            for (key_id, count) in counts {
                let marker = if key_id == keyring.current_id() {
                    " (current)"
                } else {
                    ""
                };
                println!("{key_id}{marker}: {count} secret(s)");
            }
            let opened = crate::registry::verify_all_secrets(&pool, &keyring).await?;
            println!("{opened} secret(s) open with the configured keys");
            Ok(())
        }
    }
}
