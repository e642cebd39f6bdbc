//! Ogg Opus files (RFC 3533 pages, RFC 7845 OpusHead/OpusTags) for the recording tap:
//! a streaming writer fed one 20 ms packet per tick, and a reader that checks every
//! page's CRC and returns the packets (used by tests and by playback).

use std::io::Write;

const CAPTURE: &[u8; 4] = b"OggS";
const FLAG_CONTINUED: u8 = 0x01;
const FLAG_BOS: u8 = 0x02;
const FLAG_EOS: u8 = 0x04;
/// Packets per audio page (50 × 20 ms = one second).
const PACKETS_PER_PAGE: usize = 50;
const VENDOR: &str = "palaver mixer";

#[derive(Debug, thiserror::Error)]
pub enum OggError {
    #[error("I/O error writing the recording: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an Ogg stream: {0}")]
    Malformed(&'static str),
    #[error("page {page} has a bad CRC")]
    BadCrc { page: usize },
    #[error("not an Ogg Opus stream: {0}")]
    NotOpus(&'static str),
    #[error("packet of {0} bytes is too large for one Ogg page")]
    PacketTooLarge(usize),
}

fn crc_table() -> &'static [u32; 256] {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, entry) in table.iter_mut().enumerate() {
            let mut r = (i as u32) << 24;
            for _ in 0..8 {
                r = if r & 0x8000_0000 != 0 { (r << 1) ^ 0x04c1_1db7 } else { r << 1 };
            }
            *entry = r;
        }
        table
    })
}

/// Ogg's CRC-32 (polynomial 0x04c11db7, no reflection, zero initial value).
fn ogg_crc(data: &[u8]) -> u32 {
    let table = crc_table();
    data.iter().fold(0u32, |crc, &b| (crc << 8) ^ table[(((crc >> 24) as u8) ^ b) as usize])
}

/// Writes an Ogg Opus stream, one packet at a time.
#[derive(Debug)]
pub struct OggOpusWriter<W: Write> {
    out: W,
    serial: u32,
    page_sequence: u32,
    granule: u64,
    segments: Vec<u8>,
    body: Vec<u8>,
    packets_in_page: usize,
    page: Vec<u8>,
}

impl<W: Write> OggOpusWriter<W> {
    /// Starts a stream: writes the OpusHead (BOS) and OpusTags pages.
    /// `pre_skip` is the encoder lookahead in 48 kHz samples.
    pub fn new(out: W, serial: u32, channels: u8, pre_skip: u16) -> Result<Self, OggError> {
        let mut writer = Self {
            out,
            serial,
            page_sequence: 0,
            granule: 0,
            segments: Vec::with_capacity(255),
            body: Vec::with_capacity(16 * 1024),
            packets_in_page: 0,
            page: Vec::with_capacity(17 * 1024),
        };
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(channels.max(1));
        head.extend_from_slice(&pre_skip.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family 0 (mono/stereo)
        writer.add_packet(&head)?;
        writer.flush_page(FLAG_BOS, 0)?;
        let mut tags = Vec::with_capacity(8 + 4 + VENDOR.len() + 4);
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
        tags.extend_from_slice(VENDOR.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
        writer.add_packet(&tags)?;
        writer.flush_page(0, 0)?;
        Ok(writer)
    }

    fn add_packet(&mut self, packet: &[u8]) -> Result<(), OggError> {
        let needed = packet.len() / 255 + 1;
        if needed > 255 {
            return Err(OggError::PacketTooLarge(packet.len()));
        }
        if self.segments.len() + needed > 255 {
            self.flush_page(0, self.granule)?;
        }
        let mut rest = packet.len();
        while rest >= 255 {
            self.segments.push(255);
            rest -= 255;
        }
        self.segments.push(rest as u8);
        self.body.extend_from_slice(packet);
        self.packets_in_page += 1;
        Ok(())
    }

    fn flush_page(&mut self, flags: u8, granule: u64) -> Result<(), OggError> {
        self.page.clear();
        self.page.extend_from_slice(CAPTURE);
        self.page.push(0); // stream structure version
        self.page.push(flags);
        self.page.extend_from_slice(&granule.to_le_bytes());
        self.page.extend_from_slice(&self.serial.to_le_bytes());
        self.page.extend_from_slice(&self.page_sequence.to_le_bytes());
        self.page.extend_from_slice(&[0; 4]); // CRC, filled below
        self.page.push(self.segments.len() as u8);
        self.page.extend_from_slice(&self.segments);
        self.page.extend_from_slice(&self.body);
        let crc = ogg_crc(&self.page);
        self.page[22..26].copy_from_slice(&crc.to_le_bytes());
        self.out.write_all(&self.page)?;
        self.page_sequence += 1;
        self.segments.clear();
        self.body.clear();
        self.packets_in_page = 0;
        Ok(())
    }

    /// Appends one Opus packet carrying `samples` samples per channel at 48 kHz.
    pub fn write_packet(&mut self, packet: &[u8], samples: u32) -> Result<(), OggError> {
        if self.packets_in_page >= PACKETS_PER_PAGE {
            self.flush_page(0, self.granule)?;
        }
        self.add_packet(packet)?;
        self.granule += u64::from(samples);
        Ok(())
    }

    /// Writes the final (EOS) page and returns the sink.
    pub fn finish(mut self) -> Result<W, OggError> {
        self.flush_page(FLAG_EOS, self.granule)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A parsed Ogg Opus stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggOpusReader {
    pub channels: u8,
    pub pre_skip: u16,
    pub input_sample_rate: u32,
    pub vendor: String,
    pub packets: Vec<Vec<u8>>,
    /// Granule position of the last page (samples at 48 kHz including pre-skip).
    pub final_granule: u64,
    pub saw_eos: bool,
}

impl OggOpusReader {
    /// Parses a whole Ogg Opus file held in memory (single logical stream).
    pub fn parse(data: &[u8]) -> Result<Self, OggError> {
        let mut packets: Vec<Vec<u8>> = Vec::new();
        let mut partial: Vec<u8> = Vec::new();
        let mut offset = 0;
        let mut page_index = 0;
        let mut final_granule = 0;
        let mut saw_eos = false;
        while offset < data.len() {
            let header = data.get(offset..offset + 27).ok_or(OggError::Malformed("truncated page header"))?;
            if &header[..4] != CAPTURE {
                return Err(OggError::Malformed("missing OggS capture pattern"));
            }
            let flags = header[5];
            let granule = u64::from_le_bytes(header[6..14].try_into().unwrap_or_default());
            let stored_crc = u32::from_le_bytes(header[22..26].try_into().unwrap_or_default());
            let n_segments = usize::from(header[26]);
            let table = data
                .get(offset + 27..offset + 27 + n_segments)
                .ok_or(OggError::Malformed("truncated segment table"))?;
            let body_len: usize = table.iter().map(|&s| usize::from(s)).sum();
            let page_end = offset + 27 + n_segments + body_len;
            let page = data.get(offset..page_end).ok_or(OggError::Malformed("truncated page body"))?;
            let mut check = page.to_vec();
            check[22..26].fill(0);
            if ogg_crc(&check) != stored_crc {
                return Err(OggError::BadCrc { page: page_index });
            }
            if flags & FLAG_CONTINUED == 0 && !partial.is_empty() {
                return Err(OggError::Malformed("unterminated packet before a fresh page"));
            }
            let mut body = &page[27 + n_segments..];
            for &segment in table {
                let (chunk, rest) = body.split_at(usize::from(segment));
                partial.extend_from_slice(chunk);
                body = rest;
                if segment < 255 {
                    packets.push(std::mem::take(&mut partial));
                }
            }
            final_granule = granule;
            saw_eos |= flags & FLAG_EOS != 0;
            offset = page_end;
            page_index += 1;
        }
        let mut packets = packets.into_iter();
        let head = packets.next().ok_or(OggError::NotOpus("no OpusHead"))?;
        if head.len() < 19 || &head[..8] != b"OpusHead" {
            return Err(OggError::NotOpus("first packet is not OpusHead"));
        }
        let tags = packets.next().ok_or(OggError::NotOpus("no OpusTags"))?;
        if tags.len() < 16 || &tags[..8] != b"OpusTags" {
            return Err(OggError::NotOpus("second packet is not OpusTags"));
        }
        let vendor_len = u32::from_le_bytes(tags[8..12].try_into().unwrap_or_default()) as usize;
        let vendor = tags.get(12..12 + vendor_len).ok_or(OggError::NotOpus("truncated vendor string"))?;
        Ok(Self {
            channels: head[9],
            pre_skip: u16::from_le_bytes([head[10], head[11]]),
            input_sample_rate: u32::from_le_bytes(head[12..16].try_into().unwrap_or_default()),
            vendor: String::from_utf8_lossy(vendor).into_owned(),
            packets: packets.collect(),
            final_granule,
            saw_eos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_ogg_reference_value() {
        // CRC-32/MPEG-2-like Ogg variant of "123456789" with zero init and no xorout.
        assert_eq!(ogg_crc(b"123456789"), 0x89a1_897f);
    }

    #[test]
    fn written_stream_reads_back_with_packets_and_granules() {
        let mut writer = OggOpusWriter::new(Vec::new(), 7, 1, 312).unwrap();
        let packets: Vec<Vec<u8>> = (0..120u32).map(|i| vec![(i % 251) as u8; (i as usize * 7) % 600 + 1]).collect();
        for p in &packets {
            writer.write_packet(p, 960).unwrap();
        }
        let bytes = writer.finish().unwrap();
        let stream = OggOpusReader::parse(&bytes).unwrap();
        assert_eq!(stream.channels, 1);
        assert_eq!(stream.pre_skip, 312);
        assert_eq!(stream.input_sample_rate, 48_000);
        assert_eq!(stream.vendor, VENDOR);
        assert_eq!(stream.packets, packets);
        assert_eq!(stream.final_granule, 120 * 960);
        assert!(stream.saw_eos);
    }

    #[test]
    fn corrupted_page_is_rejected() {
        let mut writer = OggOpusWriter::new(Vec::new(), 1, 2, 0).unwrap();
        writer.write_packet(&[1, 2, 3], 960).unwrap();
        let mut bytes = writer.finish().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(matches!(OggOpusReader::parse(&bytes), Err(OggError::BadCrc { .. })));
        assert!(matches!(OggOpusReader::parse(b"nonsense that is not ogg at all..."), Err(OggError::Malformed(_))));
    }
}
