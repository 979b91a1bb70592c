//! Validated identifiers of the Ukrainian social sphere and money.
//!
//! Every type here can only be built by parsing, so holding one means its
//! format and check digit were verified ("parse, don't validate"). The rules
//! are those of DOMAIN.md §5; the examples given there are tests below.
//!
//! | type | printed form |
//! | --- | --- |
//! | [`Rnokpp`] | 10 digits |
//! | [`Unzr`] | `YYYYMMDD-NNNNC` |
//! | [`Edrpou`] | 8 digits |
//! | [`Iban`] | `UA` + 27 digits |
//! | [`Katottg`] | `UA` + 17 digits |
//! | [`PassportNumber`] | 9 digits, or 2 Cyrillic capitals + 6 digits |
//! | [`CertificateCode`] | 16 digits, the last a Luhn check digit |
//! | [`Money`] | whole kopiykas in an `i64` |

mod certificate_code;
mod edrpou;
mod error;
mod iban;
mod katottg;
mod money;
mod passport;
mod rnokpp;
mod unzr;

pub use certificate_code::CertificateCode;
pub use edrpou::Edrpou;
pub use error::IdentifierError;
pub use iban::Iban;
pub use katottg::Katottg;
pub use money::{Money, MoneyError};
pub use passport::PassportNumber;
pub use rnokpp::{Rnokpp, Sex};
pub use unzr::Unzr;

/// The decimal value of an ASCII digit; callers check `is_ascii_digit` first.
fn digit_value(byte: u8) -> i64 {
    i64::from(byte - b'0')
}

/// Fails unless `text` has exactly `expected` characters, all ASCII digits.
fn require_digits(text: &str, expected: usize) -> Result<(), IdentifierError> {
    let found = text.chars().count();
    if found != expected {
        return Err(IdentifierError::WrongLength { expected, found });
    }
    if !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(IdentifierError::NotDigits);
    }
    Ok(())
}

/// Implements `Serialize` as the printed form and `Deserialize` by parsing,
/// so an invalid identifier can never be deserialized.
macro_rules! string_serde {
    ($type:ty) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(self.as_str())
            }
        }

        impl AsRef<str> for $type {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}
pub(crate) use string_serde;
