//! The palaver server binary: parse the command line, load configuration, and run the
//! chosen subcommand (`run` by default).

mod cli;
mod config;
mod hold_audio;
mod http_listener;
mod logging;
mod media;
mod memory_limits;
mod quic;
mod serve;
mod telemetry;
mod tls;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{Cli, Command, DevIdpTokenArgs};
use config::ServerConfig;
use palaver_signaling::auth::directory::DevTokenRequest;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palaver: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<()> {
    let cfg = cli.common.resolve()?;
    logging::init(cfg.server.log_format, &cfg.server.log_level);
    match cli.command.unwrap_or(Command::Run(cli::RunArgs::default())) {
        Command::Run(_) => {
            let limits = memory_limits::apply();
            tracing::info!(
                sqlite_soft_heap_limit = limits.sqlite_soft_heap_limit,
                malloc_arenas = ?limits.malloc_arenas,
                "memory limits"
            );
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(serve::run(cfg))
        }
        Command::ConnectionString => {
            let state = serve::open_state(&cfg)?;
            println!("{}", state.connection_string(&cfg.base_url(cfg.server.listen)));
            Ok(())
        }
        Command::DevIdpToken(args) => dev_idp_token(&cfg, &args),
        Command::PrintConfig => {
            print!("{}", toml::to_string_pretty(&redacted(cfg)).context("serialising the configuration")?);
            Ok(())
        }
    }
}

fn dev_idp_token(cfg: &ServerConfig, args: &DevIdpTokenArgs) -> Result<()> {
    let state = serve::open_state(cfg)?;
    let idp =
        state.auth.directory.dev_idp.as_ref().context(
            "the development identity provider is disabled (directory.dev_idp = false or tenants configured)",
        )?;
    let req = DevTokenRequest {
        oid: args.oid.clone(),
        name: args.name.clone(),
        lifetime_seconds: Some(args.lifetime_seconds),
        ..Default::default()
    };
    let minted = idp.mint(&req, chrono_now_secs())?;
    if args.json {
        println!("{}", serde_json::to_string(&minted)?);
    } else {
        println!("{}", minted.token);
    }
    Ok(())
}

fn chrono_now_secs() -> i64 {
    palaver_core::time::now_ms().div_euclid(1000)
}

fn redacted(mut cfg: ServerConfig) -> ServerConfig {
    if cfg.signaling.access_key.is_some() {
        cfg.signaling.access_key = Some("<redacted>".into());
    }
    if cfg.signaling.secondary_access_key.is_some() {
        cfg.signaling.secondary_access_key = Some("<redacted>".into());
    }
    cfg
}
