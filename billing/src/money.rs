//! Money in integer minor units (cents) with its currency, and the splits made of it.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 4217 code: three ASCII capital letters (`EUR`, `USD`). Only the shape is checked; the
/// currencies a tenant accepts are its own setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a currency is a three-letter ISO 4217 code in capitals, such as EUR")]
pub struct CurrencyError;

impl Currency {
    pub fn as_str(&self) -> &str {
        // Only ASCII capitals are ever stored (see `from_str`).
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(CurrencyError),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An amount in the currency's minor unit (cents for EUR and USD). Never negative in a price;
/// signs belong to ledger entries, not to amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }
    pub fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }
    pub fn is_zero(&self) -> bool {
        self.minor == 0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        write!(f, "{sign}{}.{:02} {}", abs / 100, abs % 100, self.currency)
    }
}

/// `bps` basis points (1/100 of a percent) of `amount`, rounded half up (away from zero for the
/// non-negative amounts we use). 10 000 bps is the whole amount.
pub fn percent_of(amount: Money, bps: u32) -> Money {
    Money { minor: bps_of(amount.minor, bps), currency: amount.currency }
}

/// [`percent_of`] on a bare amount of minor units.
pub fn bps_of(minor: i64, bps: u32) -> i64 {
    let num = i128::from(minor) * i128::from(bps);
    i64::try_from((num + 5_000).div_euclid(10_000)).unwrap_or(i64::MAX)
}

/// The platform's share of a lesson price, in basis points (2 000 = 20%, the default).
///
/// Rounding rule: the platform fee is `percent_of(price, rate)` (half up, to the minor unit); the tutor
/// gets the rest, so `fee + tutor_share == price` exactly, always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commission {
    pub rate_bps: u32,
}

impl Commission {
    pub const DEFAULT: Commission = Commission { rate_bps: 2_000 };

    /// `(platform fee, tutor share)`.
    pub fn split(&self, price: Money) -> (Money, Money) {
        let fee = percent_of(price, self.rate_bps.min(10_000));
        (fee, Money { minor: price.minor - fee.minor, currency: price.currency })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(minor: i64) -> Money {
        Money::new(minor, "EUR".parse().unwrap())
    }

    #[test]
    fn currency_shape() {
        assert_eq!("USD".parse::<Currency>().unwrap().to_string(), "USD");
        for bad in ["usd", "US", "EURO", "", "E1R", "ÄUR"] {
            assert!(bad.parse::<Currency>().is_err(), "{bad}");
        }
        let m: Money = serde_json::from_str(r#"{"minor":3500,"currency":"EUR"}"#).unwrap();
        assert_eq!(m, eur(3500));
        assert!(serde_json::from_str::<Money>(r#"{"minor":1,"currency":"eur"}"#).is_err());
        assert_eq!(eur(3505).to_string(), "35.05 EUR");
        assert_eq!(eur(-7).to_string(), "-0.07 EUR");
    }

    #[test]
    fn commission_rounds_the_fee_half_up_and_the_parts_add_up() {
        let c = Commission::DEFAULT;
        assert_eq!(c.split(eur(3500)), (eur(700), eur(2800)));
        // 20% of 0.03 is 0.006 → 0.01; of 0.02 is 0.004 → 0.00.
        assert_eq!(c.split(eur(3)), (eur(1), eur(2)));
        assert_eq!(c.split(eur(2)), (eur(0), eur(2)));
        // 12.5% of 0.04 is exactly 0.005 → rounds up to 0.01.
        assert_eq!(Commission { rate_bps: 1_250 }.split(eur(4)), (eur(1), eur(3)));
        assert_eq!(Commission { rate_bps: 0 }.split(eur(999)), (eur(0), eur(999)));
        assert_eq!(Commission { rate_bps: 10_000 }.split(eur(999)), (eur(999), eur(0)));
        // Above 100% is clamped, never a negative tutor share.
        assert_eq!(Commission { rate_bps: 20_000 }.split(eur(999)), (eur(999), eur(0)));
        for price in 0..2_000 {
            for rate in [0, 1, 333, 1_250, 2_000, 3_333, 9_999, 10_000] {
                let (fee, share) = Commission { rate_bps: rate }.split(eur(price));
                assert_eq!(fee.minor + share.minor, price);
                assert!(fee.minor >= 0 && share.minor >= 0);
            }
        }
    }

    #[test]
    fn percent_of_is_exact_on_large_amounts() {
        assert_eq!(percent_of(eur(i64::MAX), 10_000), eur(i64::MAX));
        assert_eq!(percent_of(eur(1_000_000_000_000), 5_000), eur(500_000_000_000));
        assert_eq!(percent_of(eur(101), 5_000), eur(51));
    }
}
