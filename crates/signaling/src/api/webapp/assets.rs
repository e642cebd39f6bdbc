//! The reference web client's files, embedded in the binary at build time (`web/`), and
//! how each is served (content type). Nothing is read from disk at run time.

/// One embedded file of the web client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// Path below `/app/` (e.g. `main.js`).
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            path: $name,
            content_type: $content_type,
            body: include_str!(concat!("../../../../../web/app/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page itself, served at `/`, `/app/` and `/meetings/join/{id}`.
pub const INDEX_HTML: &str = include_str!("../../../../../web/index.html");

/// Every file below `web/app/`, served at `/app/<path>`.
pub const ASSETS: &[Asset] = &[
    asset!("styles.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("main.js", JS),
    asset!("api.js", JS),
    asset!("signaling.js", JS),
    asset!("meeting.js", JS),
    asset!("media.js", JS),
    asset!("devices.js", JS),
    asset!("views.js", JS),
    asset!("chat.js", JS),
    asset!("rejoin.js", JS),
];

/// The embedded file at `/app/<path>`, if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}
