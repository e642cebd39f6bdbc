//! Surviving the loss of a node (docs/cluster.md, "Clients that resume by themselves"):
//! [`FailureDetector`] notices a silent home fast, [`Reconnector`] reconnects through another
//! node and resumes the participant there.
//!
//! - **Detection.** A closed connection is a loss at once (a killed process: the kernel
//!   resets the socket). A home that stops answering without closing (a frozen or cut-off
//!   machine) is noticed as no media for [`FailureDetector`]'s timeout once media flowed
//!   (600 ms in the failover trials; the conversation's mix sends at least a silence packet
//!   every 400 ms to every listener, so a live home is never that quiet).
//! - **Reconnect.** The next node of the list, never the one just lost first; each attempt is
//!   bounded by the connect options' timeout, and a `redirect` to the conversation's home is
//!   followed (at most two hops).
//! - **Told to move.** A home that is draining (a planned stop) sends `error` `NodeDraining`
//!   ([`asks_to_resume`]): the session is kept for the next home, so reconnect and resume at
//!   once, as after a loss, without waiting for the connection to close.
//! - **Resume.** The participant is resumed with its conversation id, participant id and
//!   resume token ([`QuicClient::resume`]): on its new home (after a takeover) it joins again
//!   with its role, lobby standing and raised hand (under a new participant id); on a home that
//!   is still alive it takes its session over. If the server cannot resume (the conversation
//!   ended), the reconnector joins the target afresh.

use crate::{ClientError, ConnectOptions, JoinTarget, Joined, QuicClient};
use palaver_core::ErrorCode;
use palaver_core::protocol::ServerMessage;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A silent connection, sans-IO: fed with the instants packets arrive, asked at each tick.
#[derive(Debug, Clone)]
pub struct FailureDetector {
    timeout: Duration,
    last_packet: Option<Instant>,
}

impl FailureDetector {
    /// Lost after `timeout` without a packet, once the first packet arrived (before that the
    /// media may simply not have started).
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, last_packet: None }
    }

    pub fn packet_received(&mut self, at: Instant) {
        self.last_packet = Some(at);
    }

    /// Whether the connection counts as lost at `now`.
    pub fn lost(&self, now: Instant) -> bool {
        self.last_packet.is_some_and(|last| now.saturating_duration_since(last) > self.timeout)
    }
}

/// Whether `message` asks the client to leave this node and `resume` through another one: the
/// conversation's home is draining and handed the session over (`error` `NodeDraining`).
pub fn asks_to_resume(message: &ServerMessage) -> bool {
    matches!(message, ServerMessage::Error { code, .. } if code == ErrorCode::NodeDraining.as_str())
}

/// How a session came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejoin {
    /// `resume` succeeded: the session taken over (home alive), or joined again on the new home
    /// with its standing (after a takeover).
    Resumed,
    /// The resume was refused (the conversation ended); joined afresh.
    Joined,
}

/// Joins and rejoins one conversation through a list of nodes.
#[derive(Debug, Clone)]
pub struct Reconnector {
    nodes: Vec<SocketAddr>,
    options: ConnectOptions,
    token: String,
    target: JoinTarget,
    display_name: Option<String>,
    next: usize,
}

impl Reconnector {
    /// `nodes` is tried in order, round robin; `options.server` is replaced per attempt.
    pub fn new(
        nodes: Vec<SocketAddr>,
        options: ConnectOptions,
        token: impl Into<String>,
        target: JoinTarget,
        display_name: Option<String>,
    ) -> Result<Self, ClientError> {
        if nodes.is_empty() {
            return Err(ClientError::InvalidArgument("a reconnector needs at least one node".into()));
        }
        Ok(Self { nodes, options, token: token.into(), target, display_name, next: 0 })
    }

    /// The node of the next attempt: round robin, skipping `avoid` (the node just lost) when
    /// there is another.
    pub fn next_node(&mut self, avoid: Option<SocketAddr>) -> SocketAddr {
        let mut node = self.nodes[self.next % self.nodes.len()];
        self.next += 1;
        if Some(node) == avoid && self.nodes.len() > 1 {
            node = self.nodes[self.next % self.nodes.len()];
            self.next += 1;
        }
        node
    }

    fn options_for(&self, server: SocketAddr) -> ConnectOptions {
        let mut options = self.options.clone();
        options.server = server;
        options
    }

    /// One join attempt through the next node (following redirects).
    pub async fn join(&mut self, avoid: Option<SocketAddr>) -> Result<(QuicClient, Joined), ClientError> {
        let node = self.next_node(avoid);
        let options = self.options_for(node);
        QuicClient::connect_and_join(&options, &self.token, self.target.clone(), self.display_name.clone()).await
    }

    /// One rejoin attempt after losing the connection to `lost`: through the next node, resume
    /// `previous` (following redirects); if the server refuses the resume, join afresh.
    pub async fn rejoin(
        &mut self,
        previous: &Joined,
        lost: Option<SocketAddr>,
    ) -> Result<(QuicClient, Joined, Rejoin), ClientError> {
        let node = self.next_node(lost);
        let mut options = self.options_for(node);
        let mut hops = 0;
        loop {
            let mut client = QuicClient::connect(&options, &self.token).await?;
            match client.resume(previous).await {
                Ok(joined) => return Ok((client, joined, Rejoin::Resumed)),
                Err(ClientError::Redirected { node, quic }) if hops < crate::connection::MAX_REDIRECTS => {
                    client.close().await;
                    hops += 1;
                    options.server = quic
                        .parse()
                        .map_err(|_| ClientError::Protocol(format!("redirect to node {node}: bad address {quic}")))?;
                }
                Err(ClientError::Refused { code, message }) => {
                    tracing::debug!(code, message, "resume refused; joining afresh");
                    client.close().await;
                    let (client, joined) = QuicClient::connect_and_join(
                        &options,
                        &self.token,
                        self.target.clone(),
                        self.display_name.clone(),
                    )
                    .await?;
                    return Ok((client, joined, Rejoin::Joined));
                }
                Err(e) => {
                    client.close().await;
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_counts_as_a_loss_only_after_media_flowed_and_the_timeout_passed() {
        let t0 = Instant::now();
        let mut detector = FailureDetector::new(Duration::from_millis(600));
        assert!(!detector.lost(t0 + Duration::from_secs(10)), "no media yet: not lost");
        detector.packet_received(t0);
        assert!(!detector.lost(t0 + Duration::from_millis(600)));
        assert!(detector.lost(t0 + Duration::from_millis(601)));
        detector.packet_received(t0 + Duration::from_millis(700));
        assert!(!detector.lost(t0 + Duration::from_millis(800)));
    }

    #[test]
    fn only_a_draining_home_asks_to_resume() {
        let draining = ServerMessage::error(ErrorCode::NodeDraining, "draining", None);
        assert!(asks_to_resume(&draining));
        assert!(!asks_to_resume(&ServerMessage::error(ErrorCode::NodeUnavailable, "gone", None)));
        assert!(!asks_to_resume(&ServerMessage::error(ErrorCode::Forbidden, "no", None)));
    }

    #[test]
    fn the_next_node_skips_the_one_just_lost() {
        let nodes: Vec<SocketAddr> = ["127.0.0.1:1", "127.0.0.2:1", "127.0.0.3:1"].map(|a| a.parse().unwrap()).into();
        let options = ConnectOptions::new(nodes[0], "localhost", "");
        let target = JoinTarget::GroupCall { group_id: "g".into() };
        let mut r = Reconnector::new(nodes.clone(), options.clone(), "t", target.clone(), None).unwrap();
        assert_eq!(r.next_node(None), nodes[0]);
        assert_eq!(r.next_node(Some(nodes[1])), nodes[2], "the lost node is skipped");
        assert_eq!(r.next_node(None), nodes[0]);
        let mut single = Reconnector::new(vec![nodes[0]], options.clone(), "t", target.clone(), None).unwrap();
        assert_eq!(single.next_node(Some(nodes[0])), nodes[0], "the only node is tried again");
        assert!(Reconnector::new(vec![], options, "t", target, None).is_err());
    }
}
