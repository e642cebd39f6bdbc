//! The binary's command line and start-up behaviour.

use palaver_e2e::{Server, ServerOptions, TempDir};
use std::process::Command;

#[test]
fn help_documents_subcommands_and_flags() {
    let out = Command::new(Server::binary()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for word in [
        "run",
        "connection-string",
        "dev-idp-token",
        "print-config",
        "--config",
        "--listen",
        "--data-dir",
        "--log-format",
    ] {
        assert!(help.contains(word), "--help lacks `{word}`:\n{help}");
    }
}

#[test]
fn bad_configuration_fails_clearly() {
    let dir = TempDir::new("palaver-e2e");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[server]\nlisten = \"not an address\"\n").unwrap();
    let out = Command::new(Server::binary()).arg("--config").arg(&cfg).arg("print-config").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid config file"), "{err}");
}

#[tokio::test]
async fn env_overrides_and_offline_subcommands_share_the_data_dir() {
    let dir = TempDir::new("palaver-e2e");
    let mut server = Server::start_in(
        dir.path(),
        ServerOptions {
            env: vec![
                ("PALAVER_RESOURCE_ID".into(), "e2e-resource".into()),
                ("PALAVER_LOG_FORMAT".into(), "json".into()),
            ],
            ..Default::default()
        },
    )
    .await;
    let (id, _) = server.create_user_token(&["chat"]).await;
    assert!(id.starts_with("8:acs:e2e-resource_"), "{id}");
    let log = std::fs::read_to_string(dir.path().join("palaver.log")).unwrap();
    let first = log.lines().find(|l| !l.trim().is_empty()).unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(first).is_ok(), "JSON log line expected: {first}");

    let conn =
        Command::new(Server::binary()).arg("--data-dir").arg(dir.path()).arg("connection-string").output().unwrap();
    let conn = String::from_utf8(conn.stdout).unwrap();
    let key = server.connection_string().split("accesskey=").nth(1).unwrap();
    assert!(conn.trim().ends_with(key), "{conn}");
    assert!(server.terminate().success());
}
