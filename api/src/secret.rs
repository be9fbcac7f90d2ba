//! Secrets in request bodies: the text that carries one is wiped when dropped and never
//! printed, and an error about it names the field, never its content: the value or place of
//! a bad digit would give away part of the secret.

use base64::Engine as _;
use dta_protocol::order::SecretBytes;
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

use crate::BodyError;

/// Largest secret a principal may hand over.
pub const MAX_SECRET_LEN: usize = 64 * 1024;

/// A string of a request body that carries a secret or its encoding: wiped when dropped and
/// never printed. A value of another type is refused without being quoted (serde_json's own
/// message for a string field quotes it).
pub struct SecretText(Zeroizing<String>);

impl SecretText {
    fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `deserialize_any`, so that a number or boolean reaches the visitor, which answers
        // without quoting it.
        deserializer.deserialize_any(SecretTextVisitor)
    }
}

struct SecretTextVisitor;

impl SecretTextVisitor {
    fn not_text<E: serde::de::Error>() -> E {
        E::custom("expected a string")
    }
}

impl serde::de::Visitor<'_> for SecretTextVisitor {
    type Value = SecretText;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SecretText, E> {
        Ok(SecretText::new(text.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<SecretText, E> {
        Ok(SecretText::new(text))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<SecretText, E> {
        Err(Self::not_text())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SecretText, E> {
        Err(Self::not_text())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SecretText, E> {
        Err(Self::not_text())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SecretText, E> {
        Err(Self::not_text())
    }
}

/// Base64 of secrets: the standard alphabet; padding written out, optional on the way in.
pub const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// The secret from whichever one of `text` (UTF-8), `hex_digits` and `base64_text` a body
/// gives (`secret`, `secret_hex`, `secret_base64`), at most [`MAX_SECRET_LEN`] bytes.
pub fn given_secret(
    text: Option<SecretText>,
    hex_digits: Option<SecretText>,
    base64_text: Option<SecretText>,
) -> Result<Option<SecretBytes>, BodyError> {
    let given: Vec<&str> = [
        ("secret", text.is_some()),
        ("secret_hex", hex_digits.is_some()),
        ("secret_base64", base64_text.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, given)| given.then_some(field))
    .collect();
    if given.len() > 1 {
        return Err(BodyError::Malformed(format!(
            "give the secret once: as secret (text), secret_hex or secret_base64, not as {}",
            given.join(" and ")
        )));
    }
    let secret = if let Some(mut text) = text {
        // Moved, not copied, so the only copy is the one SecretBytes wipes.
        SecretBytes::new(std::mem::take(&mut *text.0).into_bytes())
    } else if let Some(digits) = hex_digits {
        decode_hex(digits.0.trim())?
    } else if let Some(encoded) = base64_text {
        decode_base64(encoded.0.trim())?
    } else {
        return Ok(None);
    };
    if secret.expose().len() > MAX_SECRET_LEN {
        return Err(BodyError::Malformed(format!(
            "the secret is {} bytes; a secret may be at most {MAX_SECRET_LEN} bytes (64 KiB)",
            secret.expose().len()
        )));
    }
    Ok(Some(secret))
}

/// Decodes into a buffer that is wiped whatever happens (`hex::decode` would drop a partly
/// filled one as it is).
fn decode_hex(digits: &str) -> Result<SecretBytes, BodyError> {
    let mut bytes = Zeroizing::new(vec![0; digits.len() / 2]);
    hex::decode_to_slice(digits, bytes.as_mut_slice()).map_err(|_| {
        BodyError::Malformed(
            "secret_hex is not hex: it takes an even number of the digits 0-9 and a-f (or A-F) \
             and nothing else"
                .into(),
        )
    })?;
    Ok(SecretBytes::new(std::mem::take(&mut *bytes)))
}

/// Decodes into a buffer that is wiped whatever happens, as [`decode_hex`].
fn decode_base64(encoded: &str) -> Result<SecretBytes, BodyError> {
    let mut bytes = Zeroizing::new(vec![0; base64::decoded_len_estimate(encoded.len())]);
    let len = BASE64
        .decode_slice(encoded, bytes.as_mut_slice())
        .map_err(|_| {
            BodyError::Malformed(
                "secret_base64 is not base64: it takes the standard alphabet (A-Z a-z 0-9 + /), \
                 optionally padded with =, and nothing else"
                    .into(),
            )
        })?;
    bytes.truncate(len);
    Ok(SecretBytes::new(std::mem::take(&mut *bytes)))
}
