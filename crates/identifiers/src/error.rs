/// Why a text is not a valid identifier. The messages are meant for the
/// person who typed the value, so they say what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("must not be empty")]
    Empty,
    #[error("must have {expected} characters, found {found}")]
    WrongLength { expected: usize, found: usize },
    #[error("must contain only digits")]
    NotDigits,
    #[error("check digit does not match")]
    CheckDigitMismatch,
    #[error("must start with the country code UA")]
    NotUkrainian,
    #[error("does not encode an existing date")]
    InvalidDate,
    #[error("serial number must not be zero")]
    ZeroSerial,
    #[error("must have the form {expected}")]
    Malformed { expected: &'static str },
}
