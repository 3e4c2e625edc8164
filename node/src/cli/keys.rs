//! `sparebox keys generate|show`.

use std::path::PathBuf;
use std::process::ExitCode;

use sparebox_protocol::identity::{Keypair, paths};

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Generate a new ed25519 key file (mode 0600).
    Generate {
        /// Where to write the key [default: $XDG_DATA_HOME/sparebox/keys/deployer.key].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Overwrite an existing key file (its old key is lost).
        #[arg(long)]
        force: bool,
    },
    /// Print a key's public key and libp2p PeerId.
    Show {
        /// Key file [default: $XDG_DATA_HOME/sparebox/keys/deployer.key].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { out, force } => {
            let path = out.unwrap_or_else(paths::deployer_key);
            let key = Keypair::generate()?;
            key.save(&path, force)?;
            println!("wrote {}", path.display());
            println!("public key: {}", key.public().to_hex());
            println!("peer id:    {}", key.public().to_peer_id());
        }
        KeysCommand::Show { key, json } => {
            let path = key.unwrap_or_else(paths::deployer_key);
            let key = Keypair::load(&path)?;
            if json {
                let v = serde_json::json!({
                    "path": path,
                    "publicKey": key.public().to_hex(),
                    "peerId": key.public().to_peer_id(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("key file:   {}", path.display());
                println!("public key: {}", key.public().to_hex());
                println!("peer id:    {}", key.public().to_peer_id());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
