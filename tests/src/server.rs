//! A running `palaver` process for a test.

use crate::hmac_client::HmacSigner;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// A directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Extra command-line flags (before the `run` subcommand).
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// A TOML config file body, written to `<data_dir>/palaver.toml` and passed with `--config`.
    pub config_toml: Option<String>,
}

/// A started server. Stopped (SIGKILL) on drop if still running.
pub struct Server {
    child: Option<Child>,
    data_dir: PathBuf,
    base_url: String,
    host: String,
    ca_file: PathBuf,
    connection_string: String,
    signer: HmacSigner,
    http: reqwest::Client,
    /// The SIP gateway's UDP/TCP address, when `[sip]` is configured.
    sip: Option<std::net::SocketAddr>,
}

impl Server {
    /// Where the binary is: `$PALAVER_BIN`, else next to the test executable.
    pub fn binary() -> PathBuf {
        if let Some(p) = std::env::var_os("PALAVER_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("current_exe");
        // target/<profile>/deps/e2e-xxxx -> target/<profile>/palaver
        let dir = exe.parent().and_then(Path::parent).expect("target dir");
        let bin = dir.join("palaver");
        assert!(bin.exists(), "palaver binary not found at {} (run `cargo build -p palaver` first)", bin.display());
        bin
    }

    /// Start on a fresh data directory (`dir` keeps it alive; pass it to [`start_in`] to restart).
    pub async fn start_in(data_dir: &Path, options: ServerOptions) -> Server {
        let mut cmd = Command::new(Self::binary());
        cmd.arg("--data-dir").arg(data_dir).arg("--listen").arg("127.0.0.1:0").arg("--log-level").arg("info");
        if let Some(toml) = &options.config_toml {
            let path = data_dir.join("palaver.toml");
            std::fs::write(&path, toml).expect("write config");
            cmd.arg("--config").arg(path);
        }
        cmd.args(&options.args).arg("run");
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("palaver.log"))
            .expect("open log file");
        cmd.stdout(Stdio::piped()).stderr(Stdio::from(log));
        let mut child = cmd.spawn().expect("spawn palaver");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((k, v)) = line.split_once(' ')
                    && k.starts_with("PALAVER_")
                {
                    let _ = tx.send((k.to_string(), v.to_string()));
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut base_url, mut ca_file, mut connection_string, mut sip) = (None, None, None, None);
        while base_url.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((k, v)) => match k.as_str() {
                    "PALAVER_READY" => base_url = Some(v),
                    "PALAVER_CA_FILE" => ca_file = Some(PathBuf::from(v)),
                    "PALAVER_CONNECTION_STRING" => connection_string = Some(v),
                    "PALAVER_SIP" => sip = v.parse().ok(),
                    _ => {}
                },
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(data_dir.join("palaver.log")).unwrap_or_default();
                    panic!("palaver did not become ready; log:\n{log}");
                }
            }
        }
        let base_url = base_url.expect("ready");
        let ca_file = ca_file.expect("PALAVER_CA_FILE line");
        let connection_string = connection_string.expect("PALAVER_CONNECTION_STRING line");
        let access_key = connection_string.split("accesskey=").nth(1).expect("accesskey").to_string();
        let host = base_url.trim_start_matches("https://").to_string();
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_file).expect("read CA")).expect("CA pem");
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Server {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            base_url,
            host,
            ca_file,
            connection_string,
            signer: HmacSigner::from_access_key(&access_key),
            http,
            sip,
        }
    }

    /// The SIP gateway's address (UDP and TCP), when the config has `[sip]`.
    pub fn sip_addr(&self) -> Option<std::net::SocketAddr> {
        self.sip
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }
    /// `host:port`, as signed in the `host` header.
    pub fn host(&self) -> &str {
        &self.host
    }
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    pub fn connection_string(&self) -> &str {
        &self.connection_string
    }
    pub fn signer(&self) -> &HmacSigner {
        &self.signer
    }
    /// An HTTPS client that trusts the server's CA.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// An HMAC-signed request (SDK-style), body as given (JSON text or empty).
    pub async fn signed_raw(&self, method: Method, path_and_query: &str, body: &str) -> reqwest::Response {
        let mut req = self.http.request(method.clone(), format!("{}{path_and_query}", self.base_url));
        for (k, v) in
            self.signer.headers(method.as_str(), path_and_query, &self.host, body.as_bytes(), SystemTime::now())
        {
            req = req.header(k, v);
        }
        req.header("content-type", "application/json").body(body.to_string()).send().await.expect("request")
    }

    /// An HMAC-signed request; returns status and JSON body (`Null` when empty).
    pub async fn signed(&self, method: Method, path_and_query: &str, body: &str) -> (StatusCode, Value) {
        json_of(self.signed_raw(method, path_and_query, body).await).await
    }

    /// A request with `Authorization: Bearer <token>`.
    pub async fn bearer(&self, method: Method, path: &str, token: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base_url)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        json_of(req.send().await.expect("request")).await
    }

    /// `GET /auth/whoami` with a token.
    pub async fn whoami(&self, token: &str) -> (StatusCode, Value) {
        self.bearer(Method::GET, "/auth/whoami", token, None).await
    }

    /// Create a communication user with a token for `scopes`; returns (raw id, token).
    pub async fn create_user_token(&self, scopes: &[&str]) -> (String, String) {
        let body = serde_json::json!({ "createTokenWithScopes": scopes }).to_string();
        let (status, v) = self.signed(Method::POST, "/identities?api-version=2023-10-01", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        (v["identity"]["id"].as_str().unwrap().to_string(), v["accessToken"]["token"].as_str().unwrap().to_string())
    }

    /// Mint a dev-IdP token (`POST /dev-idp/token`) with optional overrides
    /// (`appId`, `scp`, `tid`, `lifetimeSeconds`).
    pub async fn dev_idp_token(&self, oid: &str, name: &str, overrides: Value) -> Value {
        let mut body = serde_json::json!({ "oid": oid, "name": name });
        if let Value::Object(extra) = overrides {
            body.as_object_mut().unwrap().extend(extra);
        }
        let (status, v) = self.signed(Method::POST, "/dev-idp/token", &body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    /// A directory user's palaver token via the dev IdP and the exchange; returns the token.
    pub async fn directory_user_token(&self, oid: &str, name: &str) -> String {
        let minted = self.dev_idp_token(oid, name, Value::Null).await;
        let body = serde_json::json!({ "token": minted["token"], "appId": minted["appId"], "userId": oid }).to_string();
        let (status, v) =
            self.signed(Method::POST, "/teamsUser/:exchangeAccessToken?api-version=2023-10-01", &body).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    /// Send SIGTERM and wait for the exit status (graceful shutdown).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("palaver did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL (a crash) and wait.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Status and JSON body of a response (`Null` for an empty body, a string if not JSON).
pub async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, value)
}
