//! The controller's side of RTP latching (`engine::latching` has the rules): a trunk with
//! `rtp_latching = true` hands the media plane the media name `rtp_latching=<ip>,<ip>…` (its
//! signaling addresses, the `allow_from` list), and every joined leg of that trunk is told to
//! latch to a source from those IPs or its SDP's IP, with its negotiated payload types.

use std::net::IpAddr;

use crate::control::{Conferences, Output};
use crate::engine::{Command, RtpLatch};

/// The prefix of the media name that turns latching on.
const NAME: &str = "rtp_latching=";

/// The media name for a trunk whose signaling comes from `ips`.
pub fn name(ips: &[IpAddr]) -> String {
    let list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    format!("{NAME}{}", list.join(","))
}

/// The signaling IPs of a latching trunk, from its media names; `None`: no latching.
pub fn from_names<S: AsRef<str>>(names: &[S]) -> Option<Vec<IpAddr>> {
    let list = names.iter().find_map(|n| n.as_ref().strip_prefix(NAME))?;
    Some(list.split(',').filter_map(|ip| ip.trim().parse().ok()).collect())
}

impl Conferences {
    /// Tells the worker that `participant`'s trunk leg in `conversation` latches (see the
    /// module docs); nothing when it has no trunk leg.
    pub fn latch_sip(&self, conversation: &str, participant: &str, signaling: &[IpAddr]) -> Output {
        let mut out = Output::default();
        let key = (conversation.to_owned(), participant.to_owned());
        let Some(leg) = self.trunk_legs.get(&key) else { return out };
        let mut ips = vec![leg.media.remote.ip()];
        ips.extend(signaling.iter().filter(|ip| **ip != leg.media.remote.ip()));
        let payload_types = std::iter::once(leg.media.payload_type).chain(leg.media.telephone_event).collect();
        let latch = Some(RtpLatch { ips, payload_types });
        out.commands.push((leg.joined.worker, Command::SetRtpLatching { transport: leg.joined.transport, latch }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latching_name_carries_the_trunks_signaling_addresses() {
        let ips: Vec<IpAddr> = vec!["203.0.113.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        let names = ["PCMU".to_owned(), "srtp=off".to_owned(), name(&ips)];
        assert_eq!(from_names(&names), Some(ips));
        assert_eq!(from_names(&["PCMU"]), None);
    }
}
