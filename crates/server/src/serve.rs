//! `palaver run`: the composition root. Opens the data directory, builds the parts (the
//! Prometheus registry, the usage ledger, the media workers), builds the application state
//! once from them, and serves HTTPS and the QUIC transport until SIGTERM / ctrl-c (graceful:
//! in-flight requests get 10 s to finish).

use crate::config::{ServerConfig, TlsMode};
use crate::media::MediaController;
use crate::quic::QuicServer;
use crate::quic::paths::QuicPaths;
use crate::tls::{TlsFiles, ensure_self_signed};
use anyhow::{Context, Result};
use palaver_cluster::ClusterStores;
use palaver_sfu::net::{WorkerConfig, WorkerPool};
use palaver_sfu::webrtc::dtls::DtlsIdentity;
use palaver_signaling::api::router;
use palaver_signaling::app::{AppParts, AppState};
use palaver_signaling::store::Store;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Open the database and application state for `cfg` with `parts` plugged in. In cluster
/// mode the identity, rooms, meetings and chat stores are PostgreSQL's
/// ([`ClusterStores::plug_into`]).
fn open_state_with(cfg: &ServerConfig, cluster: Option<&ClusterStores>, mut parts: AppParts) -> Result<AppState> {
    let db = cfg.database_path();
    let store = Store::open(&db).with_context(|| format!("opening database {}", db.display()))?;
    if let Some(cluster) = cluster {
        cluster.plug_into(&mut parts);
    }
    AppState::open(cfg.signaling_config(), store, parts).context("initialising the control plane")
}

/// The PostgreSQL stores when `[cluster] postgres_url` is set.
fn open_cluster(cfg: &ServerConfig) -> Result<Option<ClusterStores>> {
    ClusterStores::open(&cfg.cluster).context("opening the cluster stores ([cluster] postgres_url)")
}

/// The application state for the offline subcommands: no billing, telemetry or media.
pub fn open_state(cfg: &ServerConfig) -> Result<AppState> {
    let cluster = open_cluster(cfg)?;
    open_state_with(cfg, cluster.as_ref(), AppParts::default())
}

pub async fn run(cfg: ServerConfig) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = palaver_telemetry::PalaverMetrics::new().context("building the metrics registry")?;
    let mut cluster = open_cluster(&cfg)?;
    if let Some(cluster) = cluster.as_mut() {
        cluster.connect_redis(&cfg.cluster).await.context("connecting to Redis ([cluster] redis_url)")?;
    }
    // Sessions a takeover adopted await their participants for the reconnect grace.
    let grace_ms = cfg.signaling_config().gateway.reconnect_grace_ms;
    let ledger = cluster.as_ref().map(|c| c.ledger_opener(grace_ms));
    let usage = palaver_billing::UsageService::start_with(&cfg.usage, &cfg.server.data_dir, ledger, metrics.clone())
        .context("starting the usage ledger")?;
    // Only the built-in default port may be taken (a second server on one host); a configured
    // address that cannot be bound is fatal.
    let if_taken = if cfg.usage.metrics_listen == palaver_billing::UsageConfig::default().metrics_listen {
        palaver_telemetry::IfTaken::Skip
    } else {
        palaver_telemetry::IfTaken::Fail
    };
    let metrics_server = palaver_telemetry::start_metrics_listener(cfg.usage.metrics_listen, metrics.clone(), if_taken)
        .await
        .context("starting the /metrics listener")?;
    let media = start_media(&cfg, &metrics)?;
    let events = open_events(&cfg, cluster.as_ref(), &metrics)?;
    palaver_events::lifecycle::LifecycleEvents::publish_recovered(&events, &usage.recovery.changes);
    let parts = AppParts {
        // Call lifecycle events ride on the billing observer's session stream.
        // In a cluster, a node that lost a conversation to a newer epoch bills nothing more for it.
        sessions: palaver_events::lifecycle::LifecycleEvents::wrap(
            match &cluster {
                Some(cluster) => cluster.fence.wrap(usage.observer()),
                None => usage.observer(),
            },
            events.clone(),
        ),
        events: Arc::new(events.clone()),
        telemetry: metrics.clone(),
        media: match &media {
            Some(m) => m.controller.clone(),
            None => Arc::new(palaver_signaling::gateway::MediaUnavailable),
        },
        chat_telemetry: Some(metrics.clone()),
        chat_usage: Some(usage.chat_observer()),
        ..AppParts::default()
    };
    let state = open_state_with(&cfg, cluster.as_ref(), parts)?;
    events.set_resource_id(&state.resource.resource_id);
    // The media plane reports active speakers and slots back to the gateway.
    let relay = media.as_ref().map(|m| m.controller.spawn_event_relay(state.gateway.clone()));
    let quic_paths = media.as_ref().map(|m| m.quic_paths.clone()).unwrap_or_default();
    let tls = match cfg.tls.mode {
        TlsMode::SelfSigned => Some(ensure_self_signed(&cfg.tls_dir(), &cfg.tls.extra_names)?),
        TlsMode::Files => Some(TlsFiles {
            cert: cfg.tls.cert.clone().context("tls.cert")?,
            key: cfg.tls.key.clone().context("tls.key")?,
            ca: None,
        }),
        TlsMode::Off => None,
    };

    let listener =
        std::net::TcpListener::bind(cfg.server.listen).with_context(|| format!("binding {}", cfg.server.listen))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let base_url = cfg.base_url(bound);
    let quic = start_quic(&cfg, tls.as_ref(), &state, quic_paths)?;
    // Cluster mode: metrics, node mesh and placement, registry heartbeats (docs/cluster.md).
    let cluster_node = match &cluster {
        Some(cluster) => Some(
            cluster
                .start_node(&cfg.cluster, &state, metrics.registry(), quic.as_ref().map(|q| q.local_addr), &base_url)
                .await
                .context("starting the cluster node")?,
        ),
        None => None,
    };
    if let Some(mesh) = cluster_node.as_ref().and_then(|n| n.mesh_addr()) {
        println!("PALAVER_MESH {mesh}");
    }
    // Kernel receive drops of the QUIC and media sockets, on /metrics.
    if let Some(q) = &quic {
        metrics.watch_udp_socket(palaver_telemetry::UdpSocketKind::Quic, q.local_addr.port());
        // What quinn discards on the QUIC port (junk, unknown connections), beside the kernel's drops.
        let traffic =
            crate::quic::traffic::TrafficCollector::new(q.traffic.clone()).context("the QUIC datagram counters")?;
        metrics.registry().register(Box::new(traffic)).context("registering the QUIC datagram counters")?;
    }
    for port in media.as_ref().map(|m| m.worker_ports.clone()).unwrap_or_default() {
        metrics.watch_udp_socket(palaver_telemetry::UdpSocketKind::Media, port);
    }
    events.set_public_url(&base_url);
    let delivery = palaver_events::spawn_delivery(events.clone());
    let app = router(state.clone())
        .merge(quic_discovery(quic.clone()))
        .layer(axum::Extension(usage.export()))
        .layer(axum::Extension(events));
    let fd_limit = crate::http_listener::raise_fd_limit();
    let limits = cfg.server.http.effective(fd_limit);
    if limits.max_connections < cfg.server.http.max_connections {
        tracing::warn!(
            fd_limit,
            max_connections = limits.max_connections,
            "connection cap lowered to fit the file-descriptor limit"
        );
    }
    let listener_metrics = crate::http_listener::ListenerMetrics::register(metrics.registry())
        .context("registering the listener metrics")?;
    let acceptor = match &tls {
        Some(files) => Some(files.https_acceptor().context("loading the TLS certificate and key")?),
        None => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app =
        app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(Duration::from_millis(limits.body_timeout_ms)));
    let server = tokio::spawn(crate::http_listener::serve(
        tokio::net::TcpListener::from_std(listener).context("the HTTPS listener")?,
        acceptor,
        app,
        limits,
        listener_metrics,
        stop_rx,
        SHUTDOWN_GRACE,
    ));

    if let Some(m) = &metrics_server {
        println!("PALAVER_METRICS_URL http://{}/metrics", m.local_addr);
    }
    if let Some(q) = &quic {
        println!("PALAVER_QUIC {}", q.local_addr);
    }
    // The SIP trunk gateway (docs/sip.md): phone calls to owned numbers through the call machinery.
    let sip = match &cfg.sip {
        Some(sip) => {
            let numbers = palaver_sip::validate(Some(sip), &cfg.phone_numbers).context("[sip] configuration")?;
            let gateway = palaver_sip::SipGateway::start(sip.clone(), numbers, state.gateway.clone())
                .await
                .context("starting the SIP gateway")?;
            println!("PALAVER_SIP {}", gateway.local_addr());
            let counters = gateway.counters();
            metrics
                .set_sip_source(move || {
                    let s = counters.snapshot();
                    palaver_telemetry::SipSnapshot {
                        calls: s.calls,
                        responses: s.responses,
                        unknown_source: s.unknown_source,
                        malformed: s.malformed,
                        challenges: s.challenges,
                        keepalives_ok: s.keepalives_ok,
                        keepalives_failed: s.keepalives_failed,
                    }
                })
                .context("registering the SIP metrics")?;
            Some(gateway)
        }
        None => None,
    };
    announce(&state, &base_url, tls.as_ref().and_then(|t| t.ca.as_deref()))?;
    if cfg.dev.sign_in {
        tracing::warn!(
            url = %base_url,
            "DEVELOPMENT SIGN-IN IS ON (--dev-sign-in): anyone who reaches this server gets identities and \
             tokens without a credential; never run it like this on a shared or public deployment"
        );
    }
    tracing::info!(listen = %bound, url = %base_url, resource_id = %state.resource.resource_id, "palaver is ready");

    let drain = cluster_node.as_ref().map(|n| n.drain());
    let shutdown = {
        let state = state.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            // A cluster node first leaves the registry and hands its conversations over: their
            // participants resume on the other nodes at once, their usage sessions kept open for
            // the new home to adopt (docs/cluster.md, "Drain").
            if let Some(drain) = drain {
                drain.run().await;
            }
            // End every other live participant session (ServerShutdown) so usage is closed
            // cleanly (every one of them on a single node).
            state.gateway.shutdown().await;
            let _ = stop_tx.send(true);
        })
    };
    server.await.context("server task")?;
    shutdown.abort();
    if let Some(node) = cluster_node {
        node.stop().await;
    }
    delivery.stop();
    if let Some(q) = &quic {
        q.close().await;
    }
    tokio::task::spawn_blocking(move || usage.shutdown()).await.context("closing the usage ledger")?;
    if let Some(m) = metrics_server {
        m.task.abort();
    }
    if let Some(relay) = relay {
        relay.abort();
    }
    if let Some(sip) = sip {
        sip.shutdown();
    }
    if let Some(media) = media {
        // Dropping the last handles of the controller and the pool stops the workers (joins
        // their threads, so off the runtime); the state holds the controller too.
        drop((state, quic));
        tokio::task::spawn_blocking(move || drop(media)).await.context("stopping the media workers")?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The events service (`[events]`): its database in the data directory (PostgreSQL in cluster
/// mode), its counters on the registry. Delivery starts once the listener's URL is known.
fn open_events(
    cfg: &ServerConfig,
    cluster: Option<&ClusterStores>,
    metrics: &palaver_telemetry::PalaverMetrics,
) -> Result<palaver_events::Events> {
    let telemetry =
        palaver_telemetry::EventMetrics::register(metrics.registry()).context("registering event metrics")?;
    let options = palaver_events::EventsOptions {
        telemetry: Arc::new(telemetry),
        ..palaver_events::EventsOptions::new(cfg.events.clone(), String::new())
    };
    if let Some(cluster) = cluster {
        return palaver_events::Events::open_with_store(cluster.event_store(), options)
            .context("opening the events store on PostgreSQL");
    }
    let path = cfg.events_database_path();
    palaver_events::Events::open(&path, options)
        .with_context(|| format!("opening the events database {}", path.display()))
}

/// The QUIC endpoint (`[server.quic]`), when enabled and TLS is on.
fn start_quic(
    cfg: &ServerConfig,
    tls: Option<&TlsFiles>,
    state: &AppState,
    paths: Arc<QuicPaths>,
) -> Result<Option<Arc<QuicServer>>> {
    if !cfg.server.quic.enabled {
        return Ok(None);
    }
    let Some(tls) = tls else {
        tracing::warn!("tls.mode = \"off\": the QUIC transport needs TLS and stays off");
        return Ok(None);
    };
    let listen = cfg.server.quic.listen_addr(cfg.server.listen);
    Ok(Some(Arc::new(QuicServer::start(listen, cfg.server.quic.socket_buffer, tls, state.clone(), paths)?)))
}

/// `GET /quic`: where the QUIC transport listens (404 when it is off), and its datagram drops.
fn quic_discovery(quic: Option<Arc<QuicServer>>) -> axum::Router {
    axum::Router::new().route(
        "/quic",
        axum::routing::get(move || {
            let quic = quic.clone();
            async move {
                use axum::response::IntoResponse;
                match quic {
                    Some(q) => axum::Json(q.discovery()).into_response(),
                    None => palaver_signaling::api::ApiError::new(
                        palaver_core::ErrorCode::NotFound,
                        "the QUIC transport is off on this server",
                    )
                    .into_response(),
                }
            }
        }),
    )
}

/// The running media plane: the workers, their controller (the gateway's media port) and the
/// registry of QUIC datagram paths.
struct Media {
    controller: Arc<MediaController>,
    quic_paths: Arc<QuicPaths>,
    worker_ports: Vec<u16>,
    _pool: Arc<WorkerPool>,
}

/// Starts the media workers and their controller; `metrics` reads their counters at scrape time.
fn start_media(cfg: &ServerConfig, metrics: &palaver_telemetry::PalaverMetrics) -> Result<Option<Media>> {
    // Hold audio files are checked at start even without media (a bad file is a config error).
    let hold_audio = crate::hold_audio::load(cfg).context("hold audio")?;
    if !cfg.media.enabled {
        tracing::warn!("[media] enabled = false: audio/video offers are answered MediaUnavailable");
        return Ok(None);
    }
    let pool = Arc::new(
        WorkerPool::start(WorkerConfig {
            workers: cfg.media.workers,
            bind: SocketAddr::new(cfg.media.bind_ip, cfg.media.port),
            mixer: cfg.media.mixer.to_mixer_config(),
            gso: cfg.media.gso,
            ..WorkerConfig::default()
        })
        .context("starting the media workers")?,
    );
    let identity = DtlsIdentity::generate_server().context("generating the DTLS certificate")?;
    let controller = MediaController::new(pool.clone(), identity, cfg.media.announced_ip);
    for (name, tone) in hold_audio {
        controller.register_hold_audio(&name, tone);
    }
    // Call Automation's server-side legs (play, DTMF, recording, media streaming).
    controller.enable_legs(palaver_legs::LegConfig {
        taps: Default::default(),
        recordings_dir: cfg.cluster.recordings_dir(&cfg.server.data_dir),
        sources: Arc::new(palaver_legs::Sources::new(palaver_legs::SourceConfig::default())),
    });
    let quic_paths = controller.quic_paths();
    let weak = Arc::downgrade(&pool);
    metrics.set_media_source(move || {
        weak.upgrade().map(|pool| crate::telemetry::media_snapshot(&pool)).unwrap_or_default()
    });
    let ports: Vec<u16> = pool.workers().iter().map(|w| w.local_addr.port()).collect();
    tracing::info!(workers = ports.len(), ?ports, announced_ip = %cfg.media.announced_ip, "media plane ready");
    Ok(Some(Media { controller, quic_paths, worker_ports: ports, _pool: pool }))
}

/// Human lines plus machine-readable `PALAVER_*` lines on stdout; the last is the ready line.
fn announce(state: &AppState, base_url: &str, ca: Option<&std::path::Path>) -> Result<()> {
    let conn = state.connection_string(base_url);
    let mut out = std::io::stdout().lock();
    writeln!(out, "palaver is listening on {base_url}/")?;
    if let Some(ca) = ca {
        writeln!(out, "  CA certificate (give it to SDKs/curl): {}", ca.display())?;
        writeln!(out, "PALAVER_CA_FILE {}", ca.display())?;
    }
    writeln!(out, "  connection string: {conn}")?;
    writeln!(out, "PALAVER_CONNECTION_STRING {conn}")?;
    writeln!(out, "PALAVER_READY {base_url}")?;
    out.flush()?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
