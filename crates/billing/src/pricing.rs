//! Price per participant-minute, price per chat message, and exact cost arithmetic.
//!
//! Money is kept in integer micro-dollars (1 USD = 1,000,000 µUSD) and durations in
//! milliseconds, so no floating point touches a bill. The default price is the seed's
//! published $0.004 per participant-minute (4,000 µUSD).

use serde::{Deserialize, Serialize};

/// Milliseconds in one minute.
pub const MS_PER_MINUTE: i64 = 60_000;

/// The price of one billable participant-minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// Micro-dollars per participant-minute (default 4,000 = $0.004).
    pub micro_usd_per_minute: i64,
}

impl Default for Price {
    fn default() -> Self {
        Self { micro_usd_per_minute: 4_000 }
    }
}

impl Price {
    pub fn per_minute_micro_usd(micro_usd_per_minute: i64) -> Self {
        Self { micro_usd_per_minute }
    }

    /// Parse a decimal dollar amount such as `0.004` (at most 6 decimals, not negative).
    pub fn parse_usd(text: &str) -> Result<Self, PriceError> {
        let micro = parse_usd_micro(text)?;
        Ok(Self { micro_usd_per_minute: micro })
    }

    /// Cost of `billable_ms` milliseconds, rounded half-up to the micro-dollar.
    pub fn cost_micro_usd(self, billable_ms: i64) -> i64 {
        let ms = i128::from(billable_ms.max(0));
        let numerator = ms * i128::from(self.micro_usd_per_minute) + i128::from(MS_PER_MINUTE / 2);
        (numerator / i128::from(MS_PER_MINUTE)) as i64
    }
}

/// The price of one chat message sent. ACS prices chat per message sent at $0.0008
/// (azure.microsoft.com Communication Services pricing); the default is that figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatPrice {
    /// Micro-dollars per message (default 800 = $0.0008).
    pub micro_usd_per_message: i64,
}

impl Default for ChatPrice {
    fn default() -> Self {
        Self { micro_usd_per_message: 800 }
    }
}

impl ChatPrice {
    /// Parse a decimal dollar amount such as `0.0008` (at most 6 decimals, not negative).
    pub fn parse_usd(text: &str) -> Result<Self, PriceError> {
        Ok(Self { micro_usd_per_message: parse_usd_micro(text)? })
    }
}

/// Per-minute prices of the server-side media features ACS bills besides participant time.
/// Defaults are ACS's list prices: call recording, mixed audio, $0.002 per minute; media
/// (audio) streaming $0.003 per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaPrices {
    pub recording: Price,
    pub streaming: Price,
}

impl Default for MediaPrices {
    fn default() -> Self {
        Self { recording: Price::per_minute_micro_usd(2_000), streaming: Price::per_minute_micro_usd(3_000) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("price `{0}` is not a non-negative decimal dollar amount with at most 6 decimals")]
    Malformed(String),
}

fn parse_usd_micro(text: &str) -> Result<i64, PriceError> {
    let bad = || PriceError::Malformed(text.to_string());
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 6 {
        return Err(bad());
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let frac_micro: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().map_err(|_| bad())? };
    whole.checked_mul(1_000_000).and_then(|w| w.checked_add(frac_micro)).ok_or_else(bad)
}

/// Render micro-dollars as a dollar decimal with 6 places (`40000` → `"0.040000"`).
pub fn format_usd(micro_usd: i64) -> String {
    let sign = if micro_usd < 0 { "-" } else { "" };
    let abs = micro_usd.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

/// Minutes with millisecond precision, as a decimal string with 6 places (exact for display).
pub fn format_minutes(ms: i64) -> String {
    // 1 ms = 1/60000 min; print to 6 decimals, rounded half-up.
    let micro_minutes = (i128::from(ms.max(0)) * 1_000_000 + i128::from(MS_PER_MINUTE / 2)) / i128::from(MS_PER_MINUTE);
    format!("{}.{:06}", micro_minutes / 1_000_000, micro_minutes % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_price_is_the_published_figure() {
        let p = Price::default();
        assert_eq!(format_usd(p.micro_usd_per_minute), "0.004000");
        // ten minutes cost four cents
        assert_eq!(p.cost_micro_usd(10 * MS_PER_MINUTE), 40_000);
        // one second is 4000/60 = 66.67 µUSD, rounded half-up to 67
        assert_eq!(p.cost_micro_usd(1_000), 67);
        assert_eq!(p.cost_micro_usd(0), 0);
        assert_eq!(p.cost_micro_usd(-5), 0);
    }

    #[test]
    fn chat_messages_cost_the_published_figure() {
        assert_eq!(format_usd(ChatPrice::default().micro_usd_per_message), "0.000800");
        assert_eq!(ChatPrice::parse_usd("0.0008").unwrap(), ChatPrice::default());
        assert!(ChatPrice::parse_usd("-0.0008").is_err());
    }

    #[test]
    fn parse_dollar_amounts() {
        assert_eq!(Price::parse_usd("0.004").unwrap().micro_usd_per_minute, 4_000);
        assert_eq!(Price::parse_usd("1").unwrap().micro_usd_per_minute, 1_000_000);
        assert_eq!(Price::parse_usd(".5").unwrap().micro_usd_per_minute, 500_000);
        for bad in ["", ".", "-0.1", "0.0000001", "abc", "1e3", "0.00x"] {
            assert!(Price::parse_usd(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn minute_formatting_is_exact_to_the_millisecond() {
        assert_eq!(format_minutes(600_000), "10.000000");
        assert_eq!(format_minutes(90_000), "1.500000");
        assert_eq!(format_minutes(1), "0.000017");
        assert_eq!(format_usd(-1_500_000), "-1.500000");
    }
}
