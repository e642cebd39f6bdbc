//! RTP fixed header, CSRCs, extension block and padding (`palaver_sfu::rtp::RtpHeader`) on any
//! datagram. Properties: no panic; `header_len` agrees with the parsed payload offset; the
//! payload and padding lie inside the buffer; the in-place setters a forwarder uses change only
//! their own field (parse → rewrite → parse).

use palaver_sfu::rtp::packet::{self, RtpHeader, header_len};

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let _ = palaver_sfu::rtp::is_rtp_or_rtcp(data);
    let _ = palaver_sfu::rtp::is_rtcp(data);
    let Ok(header) = RtpHeader::parse(data) else { return };
    assert_eq!(header_len(data), Ok(header.payload_offset));
    assert_eq!(header.payload_offset + header.payload_len + header.padding_len, data.len());
    assert_eq!(header.payload(data).len(), header.payload_len);
    for index in 0..=header.csrc_count as usize {
        assert_eq!(header.csrc(data, index).is_some(), index < header.csrc_count as usize);
    }
    if let Some(block) = header.extension {
        assert!(block.start + block.len <= header.payload_offset);
    }

    let mut rewritten = data.to_vec();
    let sequence = header.sequence.wrapping_add(0x1234);
    let timestamp = header.timestamp ^ 0x5555_AAAA;
    let ssrc = !header.ssrc;
    let payload_type = (header.payload_type + 1) & 0x7F;
    packet::set_sequence(&mut rewritten, sequence);
    packet::set_timestamp(&mut rewritten, timestamp);
    packet::set_ssrc(&mut rewritten, ssrc);
    packet::set_payload_type(&mut rewritten, payload_type);
    packet::set_marker(&mut rewritten, !header.marker);
    let again = RtpHeader::parse(&rewritten).expect("rewriting header fields keeps a packet valid");
    assert_eq!(
        again,
        RtpHeader { sequence, timestamp, ssrc, payload_type, marker: !header.marker, ..header },
        "setters changed more than their field"
    );
    assert_eq!(again.payload(&rewritten), header.payload(data));
}
