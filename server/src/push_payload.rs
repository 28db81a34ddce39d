//! The encrypted body of a Web Push message: RFC 8291 (message encryption for Web Push) over
//! RFC 8188's `aes128gcm` content coding, with ring (the crypto the TLS stack already uses).
//!
//! Each message gets a fresh P-256 key pair and salt. The ECDH secret with the browser's
//! `p256dh` key, mixed with the browser's `auth` secret, gives the content key and nonce; the
//! body is one record: a header (salt, record size, our public key) and the payload sealed with
//! AES-128-GCM after its last-record delimiter.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey, agree_ephemeral};
use ring::hkdf::{HKDF_SHA256, KeyType, Salt};
use ring::rand::{SecureRandom, SystemRandom};

/// The largest payload sent: what the common push services accept once encrypted.
pub const MAX_PAYLOAD: usize = 3052;
/// The record size written in the header; the payload is one record well inside it.
const RECORD_SIZE: u32 = 4096;
const SALT_LEN: usize = 16;
/// An uncompressed P-256 point.
const PUBLIC_KEY_LEN: usize = 65;
/// The last (and only) record ends with this delimiter before the tag.
const LAST_RECORD: u8 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("the payload is {0} bytes; at most {MAX_PAYLOAD} are sent")]
    TooLarge(usize),
    #[error("the subscription's p256dh key is not a base64url P-256 public key")]
    BadPublicKey,
    #[error("the subscription's auth secret is not 16 base64url bytes")]
    BadAuthSecret,
    #[error("the system's random source failed")]
    Random,
}

/// A subscription's keys, decoded once.
pub struct Recipient {
    public_key: Vec<u8>,
    auth: [u8; 16],
}

impl Recipient {
    /// `p256dh` and `auth` as browsers give them (base64url; trailing `=` padding is accepted).
    pub fn new(p256dh: &str, auth: &str) -> Result<Self, PayloadError> {
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s.trim().trim_end_matches('='));
        let public_key = decode(p256dh).map_err(|_| PayloadError::BadPublicKey)?;
        if public_key.len() != PUBLIC_KEY_LEN || public_key[0] != 4 {
            return Err(PayloadError::BadPublicKey);
        }
        let auth = decode(auth)
            .ok()
            .and_then(|a| <[u8; 16]>::try_from(a).ok())
            .ok_or(PayloadError::BadAuthSecret)?;
        Ok(Recipient { public_key, auth })
    }
}

/// An HKDF output length, for ring's typed expand.
struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf<const N: usize>(salt: &[u8], secret: &[u8], info: &[&[u8]]) -> [u8; N] {
    let mut out = [0u8; N];
    Salt::new(HKDF_SHA256, salt)
        .extract(secret)
        .expand(info, Len(N))
        .and_then(|okm| okm.fill(&mut out))
        // Lengths up to 255 × 32 bytes cannot fail; ours are at most 32.
        .expect("HKDF-SHA256 output of at most 32 bytes");
    out
}

/// The `aes128gcm` body carrying `payload` to `to`.
pub fn encrypt(
    rng: &SystemRandom,
    to: &Recipient,
    payload: &[u8],
) -> Result<Vec<u8>, PayloadError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(PayloadError::TooLarge(payload.len()));
    }
    let private =
        EphemeralPrivateKey::generate(&ECDH_P256, rng).map_err(|_| PayloadError::Random)?;
    let ours = private
        .compute_public_key()
        .map_err(|_| PayloadError::Random)?;
    let ours = ours.as_ref();
    let theirs = UnparsedPublicKey::new(&ECDH_P256, &to.public_key);
    // RFC 8291 §3.3–3.4: the input keying material from the ECDH secret and the auth secret.
    let ikm: [u8; 32] = agree_ephemeral(private, &theirs, |shared| {
        hkdf(
            &to.auth,
            shared,
            &[b"WebPush: info\0", &to.public_key, ours],
        )
    })
    .map_err(|_| PayloadError::BadPublicKey)?;
    let mut salt = [0u8; SALT_LEN];
    rng.fill(&mut salt).map_err(|_| PayloadError::Random)?;
    // RFC 8188 §2.2–2.3: the content-encryption key and the nonce of the first record.
    let cek: [u8; 16] = hkdf(&salt, &ikm, &[b"Content-Encoding: aes128gcm\0"]);
    let nonce: [u8; 12] = hkdf(&salt, &ikm, &[b"Content-Encoding: nonce\0"]);

    let header_len = SALT_LEN + 4 + 1 + PUBLIC_KEY_LEN;
    let tag_len = AES_128_GCM.tag_len();
    let mut body = Vec::with_capacity(header_len + payload.len() + 1 + tag_len);
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(PUBLIC_KEY_LEN as u8);
    body.extend_from_slice(ours);
    let mut record = Vec::with_capacity(payload.len() + 1 + tag_len);
    record.extend_from_slice(payload);
    record.push(LAST_RECORD);
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &cek).expect("a 16-byte key"));
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut record,
    )
    .expect("one record is far below AES-GCM's limit");
    body.extend_from_slice(&record);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A browser's side: a key pair and auth secret from the `ece` crate, which also decrypts.
    fn browser() -> (ece::EcKeyComponents, [u8; 16], Recipient) {
        let (pair, auth) = ece::generate_keypair_and_auth_secret().expect("browser keys");
        let components = pair.raw_components().expect("components");
        let recipient = Recipient::new(
            &URL_SAFE_NO_PAD.encode(components.public_key()),
            &URL_SAFE_NO_PAD.encode(auth),
        )
        .expect("keys");
        (components, auth, recipient)
    }

    #[test]
    fn a_browser_decrypts_what_is_sent() {
        let rng = SystemRandom::new();
        let (keys, auth, to) = browser();
        for payload in [&b""[..], b"{\"kind\":\"answer\"}", &[b'x'; MAX_PAYLOAD][..]] {
            let body = encrypt(&rng, &to, payload).expect("encrypted");
            assert_eq!(
                ece::decrypt(&keys, &auth, &body).expect("decrypts"),
                payload
            );
        }
        // Two messages with the same payload share no key, salt or ciphertext.
        let a = encrypt(&rng, &to, b"same").expect("a");
        let b = encrypt(&rng, &to, b"same").expect("b");
        assert_ne!(a[..SALT_LEN], b[..SALT_LEN]);
        assert_ne!(a[21..86], b[21..86]);
    }

    #[test]
    fn bad_keys_and_large_payloads_are_refused() {
        let rng = SystemRandom::new();
        let (_, _, to) = browser();
        assert_eq!(
            encrypt(&rng, &to, &[0; MAX_PAYLOAD + 1]).err(),
            Some(PayloadError::TooLarge(MAX_PAYLOAD + 1))
        );
        let auth = URL_SAFE_NO_PAD.encode([7u8; 16]);
        assert_eq!(
            Recipient::new("not base64!", &auth).err(),
            Some(PayloadError::BadPublicKey)
        );
        // The right length but not a point on the curve: refused when agreeing.
        let off_curve = URL_SAFE_NO_PAD.encode([4u8; 65]);
        let to = Recipient::new(&off_curve, &auth).expect("shape is right");
        assert_eq!(
            encrypt(&rng, &to, b"x").err(),
            Some(PayloadError::BadPublicKey)
        );
        let (keys, _, _) = browser();
        let p256dh = URL_SAFE_NO_PAD.encode(keys.public_key());
        assert_eq!(
            Recipient::new(&p256dh, "c2hvcnQ").err(),
            Some(PayloadError::BadAuthSecret)
        );
        // Padded base64url, as some browsers' libraries write it, is accepted.
        assert!(Recipient::new(&format!("{p256dh}="), &format!("{auth}==")).is_ok());
    }
}
