//! Command line: subcommands and flags. Every flag can also come from a `PALAVER_*`
//! environment variable; both override the config file.

use crate::config::{ConfigError, LogFormat, ServerConfig, TlsMode};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// palaver: a self-hosted real-time communication server with ACS-compatible APIs.
#[derive(Debug, Parser)]
#[command(name = "palaver", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server (the default when no subcommand is given).
    Run(RunArgs),
    /// Print the connection string (`endpoint=...;accesskey=...`) for SDKs.
    ConnectionString,
    /// Mint an IdP token from the built-in development identity provider, for the
    /// directory-user token exchange. Prints the token (or JSON with --json).
    DevIdpToken(DevIdpTokenArgs),
    /// Print the effective configuration as TOML.
    PrintConfig,
}

/// Flags every subcommand understands.
#[derive(Debug, Clone, Args, Default)]
pub struct CommonArgs {
    /// TOML configuration file (optional; embedded defaults otherwise).
    #[arg(long, short = 'c', env = "PALAVER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (database, keys, certificates). Default: ./data
    #[arg(long, env = "PALAVER_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8443 (port 0 = pick a free one).
    #[arg(long, env = "PALAVER_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// Externally visible base URL (used in the connection string).
    #[arg(long, env = "PALAVER_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Log format.
    #[arg(long, value_enum, env = "PALAVER_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    /// Log filter (tracing syntax), e.g. `info` or `palaver_signaling=debug`.
    #[arg(long, env = "PALAVER_LOG", global = true)]
    pub log_level: Option<String>,
    /// TLS mode: self-signed (default), files, off.
    #[arg(long, value_enum, env = "PALAVER_TLS_MODE", global = true)]
    pub tls_mode: Option<TlsMode>,
    /// TLS certificate chain (PEM), with --tls-mode files.
    #[arg(long, env = "PALAVER_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with --tls-mode files.
    #[arg(long, env = "PALAVER_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Resource id (default: generated on first start and kept).
    #[arg(long, env = "PALAVER_RESOURCE_ID", global = true)]
    pub resource_id: Option<String>,
    /// Base64 access key for HMAC-signed requests (default: generated and kept).
    #[arg(long, env = "PALAVER_ACCESS_KEY", global = true, hide_env_values = true)]
    pub access_key: Option<String>,
    /// Built-in development identity provider on/off (default: on unless tenants are configured).
    #[arg(long, env = "PALAVER_DEV_IDP", global = true)]
    pub dev_idp: Option<bool>,
    /// Development sign-in for the web client: tokens without a credential for anyone who
    /// reaches the server (`[dev] sign_in`). Local development only; refused beside tenants.
    #[arg(long, env = "PALAVER_DEV_SIGN_IN", global = true)]
    pub dev_sign_in: bool,
}

#[derive(Debug, Clone, Args, Default)]
pub struct RunArgs {}

#[derive(Debug, Clone, Args)]
pub struct DevIdpTokenArgs {
    /// The user's object id (`oid`).
    #[arg(long)]
    pub oid: String,
    /// Display name (`name` claim).
    #[arg(long)]
    pub name: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub lifetime_seconds: i64,
    /// Print JSON (token, tenantId, appId, oid, expiresAt) instead of the bare token.
    #[arg(long)]
    pub json: bool,
}

impl CommonArgs {
    /// The file config with these flags / environment values applied on top.
    pub fn resolve(&self) -> Result<ServerConfig, ConfigError> {
        let mut cfg = ServerConfig::load(self.config.as_deref())?;
        let s = &mut cfg.server;
        if let Some(v) = &self.data_dir {
            s.data_dir = v.clone();
        }
        if let Some(v) = self.listen {
            s.listen = v;
        }
        if let Some(v) = &self.public_url {
            s.public_url = Some(v.clone());
        }
        if let Some(v) = self.log_format {
            s.log_format = v;
        }
        if let Some(v) = &self.log_level {
            s.log_level = v.clone();
        }
        if let Some(v) = self.tls_mode {
            cfg.tls.mode = v;
        }
        if let Some(v) = &self.tls_cert {
            cfg.tls.cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            cfg.tls.key = Some(v.clone());
        }
        if let Some(v) = &self.resource_id {
            cfg.signaling.resource_id = Some(v.clone());
        }
        if let Some(v) = &self.access_key {
            cfg.signaling.access_key = Some(v.clone());
        }
        if let Some(v) = self.dev_idp {
            cfg.signaling.directory.dev_idp = Some(v);
        }
        if self.dev_sign_in {
            cfg.dev.sign_in = true;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_the_file() {
        let path = std::env::temp_dir().join(format!("palaver-cli-{}.toml", std::process::id()));
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:1000\"\ndata_dir = \"/tmp/a\"\n").unwrap();
        let cli =
            Cli::try_parse_from(["palaver", "--config", path.to_str().unwrap(), "--listen", "127.0.0.1:0", "run"])
                .unwrap();
        let cfg = cli.common.resolve().unwrap();
        assert_eq!(cfg.server.listen.port(), 0);
        assert_eq!(cfg.server.data_dir, PathBuf::from("/tmp/a"));
        assert!(matches!(cli.command, Some(Command::Run(_))));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn no_subcommand_means_run_with_defaults() {
        let cli = Cli::try_parse_from(["palaver"]).unwrap();
        assert!(cli.command.is_none());
        assert!(Cli::try_parse_from(["palaver", "--listen", "nope"]).is_err());
        let missing = Cli::try_parse_from(["palaver", "--config", "/nonexistent/palaver.toml"]).unwrap();
        assert!(missing.common.resolve().is_err());
    }

    #[test]
    fn dev_sign_in_is_off_unless_chosen_and_refused_beside_a_tenant() {
        let cli = Cli::try_parse_from(["palaver"]).unwrap();
        assert!(!cli.common.resolve().unwrap().signaling_config().directory.dev_sign_in);
        let cli = Cli::try_parse_from(["palaver", "--dev-sign-in", "run"]).unwrap();
        assert!(cli.common.resolve().unwrap().signaling_config().directory.dev_sign_in);
        let path = std::env::temp_dir().join(format!("palaver-cli-dev-{}.toml", std::process::id()));
        let tenant = "[[signaling.directory.tenants]]\ntenant_id = \"t\"\nissuer = \"https://i/t\"\n\
                      audiences = [\"a\"]\njwks = '{\"keys\":[]}'\n";
        std::fs::write(&path, format!("[dev]\nsign_in = true\n{tenant}")).unwrap();
        let cli = Cli::try_parse_from(["palaver", "--config", path.to_str().unwrap()]).unwrap();
        let refused = cli.common.resolve().unwrap_err().to_string();
        assert!(refused.contains("development sign-in"), "{refused}");
        std::fs::remove_file(path).unwrap();
    }
}
