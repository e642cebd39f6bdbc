//! The QUIC signaling stream framing (`palaver_core::stream_frame`, u32 length + JSON). The
//! first byte picks the decoder's delivery limit and the read sizes; the rest is both raw
//! stream bytes and a list of payloads. Properties: raw bytes in any split never panic and
//! never make the decoder hold more than one incomplete deliverable frame; payloads framed with
//! `encode_frame` come back in order, each as itself or (over the limit) as `Oversized`, from
//! reads of any size.

use palaver_core::stream_frame::{Decoded, FrameDecoder, LENGTH_PREFIX_BYTES, encode_frame};

fn decode(decoder: &mut FrameDecoder, wire: &[u8], read: usize, limit: usize) -> Result<Vec<Decoded>, usize> {
    let mut got = Vec::new();
    for piece in wire.chunks(read) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => got.push(frame),
                Ok(None) => break,
                Err(e) => return Err(e.0),
            }
        }
        assert!(
            decoder.buffered() < LENGTH_PREFIX_BYTES + limit.max(1) + read,
            "decoder holds {} bytes with a {limit}-byte limit",
            decoder.buffered()
        );
    }
    Ok(got)
}

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let limit = if selector & 0x80 != 0 { palaver_core::protocol::MAX_FRAME_BYTES } else { (selector & 0x3F) as usize };
    let read = (selector as usize % 7) + 1;

    let mut raw = FrameDecoder::with_limit(limit);
    if let Err(len) = decode(&mut raw, rest, read, limit) {
        assert!(len > palaver_core::stream_frame::MAX_SKIPPABLE_FRAME_BYTES);
    }

    let payloads: Vec<&[u8]> = rest.split(|b| *b == 0xFF).collect();
    let mut wire = Vec::new();
    for payload in &payloads {
        encode_frame(payload, &mut wire);
    }
    let expected: Vec<Decoded> = payloads
        .iter()
        .map(|p| if p.len() > limit { Decoded::Oversized(p.len()) } else { Decoded::Frame(p.to_vec()) })
        .collect();
    let mut decoder = FrameDecoder::with_limit(limit);
    assert_eq!(decode(&mut decoder, &wire, read, limit), Ok(expected));
    assert_eq!(decoder.buffered(), 0);
}
