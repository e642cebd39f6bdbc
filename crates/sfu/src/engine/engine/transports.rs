//! The engine's transports coming and going: a direct, plain-RTP (trunk) or WebRTC transport
//! added to a router (its SRTP contexts, ICE ufrag and source address registered with the
//! demultiplexer) and removed again.

use super::*;

impl UdpPath {
    /// A path whose keys come from `dtls`: its SRTP contexts hold no usable keys until the
    /// handshake completes (`keyed` keeps them unused).
    fn handshaking(
        ice_ufrag: String,
        ice_pwd: String,
        remote: Option<SocketAddr>,
        dtls: DtlsSession,
    ) -> Result<Self, CommandError> {
        let unkeyed = || SrtpContext::new(Profile::Aes128CmHmacSha1_80, &[0; 16], &[0; 14]);
        let (srtp_in, srtp_out) = (unkeyed().map_err(CommandError::Srtp)?, unkeyed().map_err(CommandError::Srtp)?);
        Ok(Self {
            ice_ufrag,
            ice_pwd,
            remote,
            srtp_in,
            srtp_out,
            dtls: Some(Box::new(dtls)),
            keyed: false,
            plain: false,
            rtcp_remote: None,
            trunk: None,
            latch: None,
        })
    }
}

impl Engine {
    pub(super) fn add_transport(&mut self, spec: TransportSpec) -> Result<(), CommandError> {
        if !self.routers.contains_key(&spec.router) {
            return Err(CommandError::UnknownRouter);
        }
        if self.transports.contains_key(&spec.id) || self.by_ufrag.contains_key(&spec.ice_ufrag) {
            return Err(CommandError::TransportExists);
        }
        if spec.remote.is_some_and(|r| self.by_addr.contains_key(&r)) {
            return Err(CommandError::AddressInUse);
        }
        let (srtp_in, srtp_out) = keyed_contexts(&spec.srtp).map_err(CommandError::Srtp)?;
        if let Some(remote) = spec.remote {
            self.by_addr.insert(remote, spec.id);
        }
        self.by_ufrag.insert(spec.ice_ufrag.clone(), spec.id);
        let udp = UdpPath {
            ice_ufrag: spec.ice_ufrag,
            ice_pwd: spec.ice_pwd,
            remote: spec.remote,
            srtp_in,
            srtp_out,
            dtls: None,
            keyed: true,
            plain: false,
            rtcp_remote: None,
            trunk: None,
            latch: None,
        };
        self.transports.insert(spec.id, Transport { router_id: spec.router, path: Path::Udp(Box::new(udp)) });
        Ok(())
    }

    pub(super) fn add_rtp_transport(
        &mut self,
        id: TransportId,
        router: RouterId,
        remote: SocketAddr,
    ) -> Result<(), CommandError> {
        if !self.routers.contains_key(&router) {
            return Err(CommandError::UnknownRouter);
        }
        if self.transports.contains_key(&id) {
            return Err(CommandError::TransportExists);
        }
        if self.by_addr.contains_key(&remote) {
            return Err(CommandError::AddressInUse);
        }
        // The RTCP port of a non-multiplexing peer, unless another transport has it.
        let rtcp_remote = remote
            .port()
            .checked_add(1)
            .map(|port| SocketAddr::new(remote.ip(), port))
            .filter(|addr| !self.by_addr.contains_key(addr));
        // Unused contexts (no keys): `plain` keeps packets away from them.
        let unkeyed = || SrtpContext::new(Profile::Aes128CmHmacSha1_80, &[0; 16], &[0; 14]);
        let (srtp_in, srtp_out) = (unkeyed().map_err(CommandError::Srtp)?, unkeyed().map_err(CommandError::Srtp)?);
        self.by_addr.insert(remote, id);
        if let Some(rtcp) = rtcp_remote {
            self.by_addr.insert(rtcp, id);
        }
        let udp = UdpPath {
            // Never matched: STUN is not used on a plain leg (ufrags are only looked up).
            ice_ufrag: String::new(),
            ice_pwd: String::new(),
            remote: Some(remote),
            srtp_in,
            srtp_out,
            dtls: None,
            keyed: true,
            plain: true,
            rtcp_remote,
            trunk: None,
            latch: None,
        };
        self.transports.insert(id, Transport { router_id: router, path: Path::Udp(Box::new(udp)) });
        Ok(())
    }

    pub(super) fn add_webrtc_transport(&mut self, spec: WebRtcTransportSpec) -> Result<(), CommandError> {
        if !self.routers.contains_key(&spec.router) {
            return Err(CommandError::UnknownRouter);
        }
        if self.transports.contains_key(&spec.id) || self.by_ufrag.contains_key(&spec.ice_ufrag) {
            return Err(CommandError::TransportExists);
        }
        let dtls = DtlsSession::server(&spec.dtls, &spec.remote_fingerprint);
        let udp = UdpPath::handshaking(spec.ice_ufrag.clone(), spec.ice_pwd, None, dtls)?;
        self.by_ufrag.insert(spec.ice_ufrag, spec.id);
        self.transports.insert(spec.id, Transport { router_id: spec.router, path: Path::Udp(Box::new(udp)) });
        self.handshaking.push(spec.id);
        Ok(())
    }

    /// A SIP trunk leg with DTLS-SRTP: the peer's address is known from its SDP (no ICE), so
    /// its DTLS datagrams are demultiplexed by address from the start; as DTLS client the
    /// server sends its first flight now (retransmitted from the DTLS timers until answered).
    pub(super) fn add_dtls_rtp_transport(
        &mut self,
        now: Instant,
        spec: DtlsRtpTransportSpec,
        tx: &mut impl Transmit,
    ) -> Result<(), CommandError> {
        if !self.routers.contains_key(&spec.router) {
            return Err(CommandError::UnknownRouter);
        }
        if self.transports.contains_key(&spec.id) {
            return Err(CommandError::TransportExists);
        }
        if self.by_addr.contains_key(&spec.remote) {
            return Err(CommandError::AddressInUse);
        }
        let (dtls, first_flight) = if spec.client {
            DtlsSession::client(&spec.dtls, &spec.remote_fingerprint, now, spec.remote)
                .map_err(|_| CommandError::DtlsSetup)?
        } else {
            (DtlsSession::server(&spec.dtls, &spec.remote_fingerprint), Vec::new())
        };
        // Empty ICE credentials are never matched: no STUN on a trunk leg (ufrags are only
        // looked up, and this one is not registered).
        let udp = UdpPath::handshaking(String::new(), String::new(), Some(spec.remote), dtls)?;
        self.by_addr.insert(spec.remote, spec.id);
        self.transports.insert(spec.id, Transport { router_id: spec.router, path: Path::Udp(Box::new(udp)) });
        self.handshaking.push(spec.id);
        for datagram in &first_flight {
            send_raw(tx, &self.counters, datagram, spec.remote);
        }
        Ok(())
    }

    pub(super) fn remove_transport(&mut self, id: TransportId) {
        self.telephone_events.remove(&id);
        if let Some(Transport { path: Path::Udp(t), .. }) = self.transports.remove(&id) {
            self.forget_latch(id, t.latch.as_deref());
            for addr in [t.remote, t.rtcp_remote].into_iter().flatten() {
                if self.by_addr.get(&addr) == Some(&id) {
                    self.by_addr.remove(&addr);
                }
            }
            if !t.plain {
                self.by_ufrag.remove(&t.ice_ufrag);
            }
        }
    }
}
