//! The one table of default simulcast layer sizes and expected bitrates, for every way a
//! participant declares a sent track (an SDP offer's `a=rid` list, a QUIC `media.attach`, later
//! a server leg or a SIP trunk). The router picks a subscriber's layer from these sizes and
//! bitrates until it has measured a layer's real rate.

use crate::router::LayerSpec;
use crate::rtp::ShortId;
use palaver_core::MediaKind;

/// The picture of a full-size layer, and of a video track that names no size.
pub const FULL_SIZE: (u16, u16) = (1280, 720);
/// Expected bitrate of a full-size layer; smaller layers scale by picture area.
pub const FULL_BITRATE_BPS: u64 = 2_500_000;
/// Expected bitrate of the smallest video layer, whatever its size.
pub const MIN_VIDEO_BITRATE_BPS: u64 = 100_000;
/// Expected bitrate of an Opus track.
pub const AUDIO_BITRATE_BPS: u64 = 128_000;
/// The usual rids of the reference clients (browser and QUIC), smallest first.
const SIZE_BY_RID: [(&str, (u16, u16)); 3] = [("q", (320, 180)), ("h", (640, 360)), ("f", FULL_SIZE)];
/// Most halvings of the full size an unnamed layer gets.
const MAX_HALVINGS: usize = 4;

/// A sent track's layer as its publisher declared it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeclaredLayer<'a> {
    pub rid: Option<&'a str>,
    pub ssrc: Option<u32>,
    pub rtx_ssrc: Option<u32>,
    /// An explicit picture width and height (QUIC tracks may name them).
    pub width: Option<u16>,
    pub height: Option<u16>,
}

/// The picture size of layer `index` of `count` (declaration order): its declared width and
/// height, else the usual size of rid q/h/f (or of no rid: the full size), else the browser
/// rule — the full size halved once per layer declared after it (browsers declare the
/// smallest first).
pub fn layer_size(layer: &DeclaredLayer<'_>, index: usize, count: usize) -> (u16, u16) {
    let by_rid = match layer.rid {
        None => Some(FULL_SIZE),
        Some(rid) => SIZE_BY_RID.iter().find(|(usual, _)| *usual == rid).map(|(_, size)| *size),
    };
    let (width, height) = by_rid.unwrap_or_else(|| {
        let halvings = count.saturating_sub(index + 1).min(MAX_HALVINGS);
        (FULL_SIZE.0 >> halvings, FULL_SIZE.1 >> halvings)
    });
    (layer.width.unwrap_or(width), layer.height.unwrap_or(height))
}

/// The expected bitrate of a `kind` layer of `width`×`height`.
pub fn layer_bitrate(kind: MediaKind, (width, height): (u16, u16)) -> u64 {
    if kind == MediaKind::Audio {
        return AUDIO_BITRATE_BPS;
    }
    let area = u64::from(width) * u64::from(height);
    let full_area = u64::from(FULL_SIZE.0) * u64::from(FULL_SIZE.1);
    (FULL_BITRATE_BPS * area / full_area).max(MIN_VIDEO_BITRATE_BPS)
}

/// The router's layers of a `kind` track declared as `layers` (one entry for a track without
/// simulcast).
pub fn layer_specs(kind: MediaKind, layers: &[DeclaredLayer<'_>]) -> Vec<LayerSpec> {
    layers
        .iter()
        .enumerate()
        .map(|(index, layer)| {
            let (width, height) = layer_size(layer, index, layers.len());
            LayerSpec {
                rid: layer.rid.and_then(|r| ShortId::new(r.as_bytes())),
                ssrc: layer.ssrc,
                rtx_ssrc: layer.rtx_ssrc,
                width,
                height,
                max_bitrate_bps: layer_bitrate(kind, (width, height)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(rid: &str) -> DeclaredLayer<'_> {
        DeclaredLayer { rid: Some(rid), ..DeclaredLayer::default() }
    }

    #[test]
    fn the_usual_rids_have_the_usual_sizes_in_any_order() {
        let layers = [rid("f"), rid("q"), DeclaredLayer { width: Some(480), height: Some(270), ..rid("h") }];
        let sizes: Vec<(u16, u16)> =
            layer_specs(MediaKind::Video, &layers).iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(sizes, [(1280, 720), (320, 180), (480, 270)]);
    }

    #[test]
    fn other_rids_halve_the_full_size_per_later_layer() {
        let sizes: Vec<(u16, u16)> = (0..3).map(|i| layer_size(&rid("x"), i, 3)).collect();
        assert_eq!(sizes, [(320, 180), (640, 360), (1280, 720)]);
        let untitled = DeclaredLayer { rid: None, ssrc: Some(1), ..rid("x") };
        assert_eq!(layer_size(&untitled, 0, 1), FULL_SIZE);
        let narrow = DeclaredLayer { width: Some(300), ..untitled };
        assert_eq!(layer_size(&narrow, 0, 1), (300, 720), "each declared dimension overrides its default");
        assert_eq!(layer_size(&rid("x"), 0, 9), (80, 45), "at most four halvings");
    }

    #[test]
    fn bitrate_scales_with_area_above_a_floor_and_audio_is_flat() {
        assert_eq!(layer_bitrate(MediaKind::Video, FULL_SIZE), FULL_BITRATE_BPS);
        assert_eq!(layer_bitrate(MediaKind::Screen, (640, 360)), FULL_BITRATE_BPS / 4);
        assert_eq!(layer_bitrate(MediaKind::Video, (320, 180)), FULL_BITRATE_BPS / 16);
        assert_eq!(layer_bitrate(MediaKind::Video, (80, 45)), MIN_VIDEO_BITRATE_BPS);
        assert_eq!(layer_bitrate(MediaKind::Audio, FULL_SIZE), AUDIO_BITRATE_BPS);
    }
}
