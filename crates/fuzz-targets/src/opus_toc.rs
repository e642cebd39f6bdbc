//! Opus TOC inspection (`palaver_sfu::mixer::opus_toc`, RFC 6716 section 3.1) of any payload:
//! no panic; the duration is a whole number of frames of a duration the TOC can name (at most
//! 63 frames of 60 ms); the only errors are an empty payload and a code-3 packet without its
//! count byte; `check_twenty_ms` accepts exactly the packets of 960 samples; the size-based
//! level stays on the RFC 6464 scale.

use palaver_sfu::mixer::opus_toc::{FRAME_SAMPLES, TocError, check_twenty_ms, level_from_size, packet_samples};

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let samples = packet_samples(data);
    match samples {
        Ok(n) => {
            let per_frame = [120, 240, 480, 960, 1920, 2880];
            assert!(n == 0 || per_frame.iter().any(|f| n % f == 0), "{n} samples is no whole number of frames");
            assert!(n <= 63 * 2880);
        }
        Err(TocError::Empty) => assert!(data.is_empty()),
        Err(TocError::Truncated) => assert!(data.len() == 1 && data[0] & 3 == 3),
        Err(e) => panic!("packet_samples returned {e}"),
    }
    assert_eq!(check_twenty_ms(data).is_ok(), samples == Ok(FRAME_SAMPLES));
    let quiet = data.first().map_or(0, |b| *b as usize);
    assert!(level_from_size(data.len(), quiet) <= 127);
}
