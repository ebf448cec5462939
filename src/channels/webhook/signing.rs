//! Standard Webhooks signatures (https://www.standardwebhooks.com): the receiver checks that a
//! request came from us and was not replayed, with the libraries every language has for it.
//!
//! `webhook-signature: v1,<base64 of HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>`.
//! The key is what follows `whsec_` in the configured secret, base64-decoded, as the standard
//! writes secrets. A secret without that prefix is used as it is: its bytes are the key. (The
//! standard's libraries base64-decode a secret string even without the prefix; a receiver
//! sharing an unprefixed secret with us must hand them its bytes, e.g. Python's
//! `Webhook(secret.encode())`.)

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::channels::secret::Secret;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Secrets are written with or without base64 padding; both read the same.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The HMAC key of a signing secret. Never printed.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// The key of `secret`: `whsec_` + base64, or any other text as its bytes. The error says
    /// what is wrong without the secret.
    pub fn from_secret(secret: &Secret) -> Result<Self, String> {
        let text = secret.expose();
        let key = match text.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => LENIENT.decode(encoded).map_err(|_| {
                format!(
                    "the signing secret starts with {SECRET_PREFIX} but what follows is not base64"
                )
            })?,
            None => text.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err("the signing secret is empty".into());
        }
        Ok(SigningKey(key))
    }

    /// The `webhook-signature` value for one request.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_standards_example() {
        // The example of the Standard Webhooks reference libraries' tests.
        let key = SigningKey::from_secret(&Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
            .unwrap();
        assert_eq!(
            key.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // Unpadded base64 is the same key.
        let unpadded = SigningKey::from_secret(&Secret::new("whsec_MTIzNA")).unwrap();
        let padded = SigningKey::from_secret(&Secret::new("whsec_MTIzNA==")).unwrap();
        assert_eq!(unpadded.0, padded.0);
        assert_eq!(unpadded.0, b"1234");
    }

    #[test]
    fn a_secret_without_the_prefix_is_its_bytes() {
        let key = SigningKey::from_secret(&Secret::new("plain shared secret")).unwrap();
        assert_eq!(key.0, b"plain shared secret");
    }

    #[test]
    fn a_bad_secret_is_refused_without_showing_it() {
        let e = SigningKey::from_secret(&Secret::new("whsec_not*base64!")).unwrap_err();
        assert!(e.contains("not base64"), "{e}");
        assert!(!e.contains("not*base64!"), "{e}");
        assert!(SigningKey::from_secret(&Secret::new("whsec_")).is_err());
        let key = SigningKey::from_secret(&Secret::new("whsec_MTIzNA")).unwrap();
        assert!(!format!("{key:?}").contains("1234"));
    }
}
