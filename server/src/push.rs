//! Web Push, the first channel of the outbox ([`atiende_core::outbox`], which claims, retries and
//! records): encrypts each payload for its subscription ([`crate::push_payload`]), signs the request with the
//! server's VAPID key, posts it to the push service and says what the service answered. A VAPID
//! signature names only the push service's origin, so one is made per origin and reused for
//! [`SIGNATURE_REUSE`]: a burst to one service signs once.
//!
//! Endpoints come from users, so each send checks again where it goes: https to a public address
//! only (unless loopback is allowed), names resolved here and refused if any address is not
//! public, no redirects, no proxy. An endpoint is a capability for its device: it is never logged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atiende_core::outbox::{self, Channel, Claimed, Outcome, backoff};
use atiende_core::push_endpoint::{PushEndpoint, Reach, address_allowed};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use sqlx::PgPool;
use web_push::{
    PartialVapidSignatureBuilder, SubscriptionInfo, VapidSignature, VapidSignatureBuilder,
};

use crate::push_payload::{self, Recipient};

/// How long one VAPID signature is used for an origin. It is valid for twelve hours (the expiry
/// web-push gives it); push services accept up to twenty-four.
pub const SIGNATURE_REUSE: Duration = Duration::from_secs(3600);
/// Origins whose signatures are kept; push services are few, so more means the cache is cleared.
const SIGNED_ORIGINS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(
        "the VAPID private key is not a base64url-encoded P-256 private key (generate one with `atiende vapid-keys`)"
    )]
    BadKey,
    #[error("generating a VAPID key: {0}")]
    KeyGeneration(String),
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// Signs and sends push messages with one VAPID identity.
pub struct PushSender {
    client: reqwest::Client,
    key: PartialVapidSignatureBuilder,
    public_key: String,
    subject: String,
    reach: Reach,
    /// The signature in use for each push service's origin, and when it was made.
    signatures: Mutex<HashMap<String, (Instant, VapidSignature)>>,
    rng: SystemRandom,
}

/// Resolves push services' names and keeps only addresses a push endpoint may have, so a public
/// name that points inside the network is refused at connection time.
pub struct PublicResolver {
    reach: Reach,
}

#[derive(Debug, thiserror::Error)]
#[error("the push service's name resolves to no public address")]
struct NotPublic;

impl PublicResolver {
    pub fn new(reach: Reach) -> Self {
        PublicResolver { reach }
    }
}

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let reach = self.reach;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // One address outside the allowed ranges refuses the name: a rebinding name may
            // answer with a mix.
            if addrs.is_empty() || addrs.iter().any(|a| !address_allowed(a.ip(), reach)) {
                return Err(Box::new(NotPublic) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl PushSender {
    /// `private_key` is the raw 32-byte P-256 scalar, base64url; `subject` is the `mailto:` or
    /// `https:` contact push services may use to reach the operator; `reach` which hosts
    /// endpoints may name.
    pub fn new(private_key: &str, subject: &str, reach: Reach) -> Result<Self, PushError> {
        let key = VapidSignatureBuilder::from_base64_no_sub(private_key.trim())
            .map_err(|_| PushError::BadKey)?;
        let public_key = URL_SAFE_NO_PAD.encode(key.get_public_key());
        // A push service answers; it does not send us elsewhere (a 3xx is a failed delivery). A
        // proxy would resolve names itself, past the address check.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(PublicResolver::new(reach)))
            .build()
            .map_err(|e| PushError::Client(e.to_string()))?;
        Ok(PushSender {
            client,
            key,
            public_key,
            subject: subject.to_owned(),
            reach,
            signatures: Mutex::new(HashMap::new()),
            rng: SystemRandom::new(),
        })
    }

    /// The VAPID signature for the endpoint's push service: the one made within
    /// [`SIGNATURE_REUSE`], or a new one.
    fn signature(
        &self,
        endpoint: &PushEndpoint,
        info: &SubscriptionInfo,
    ) -> Result<VapidSignature, web_push::WebPushError> {
        let origin = endpoint.origin();
        let cached = |m: &HashMap<String, (Instant, VapidSignature)>| {
            m.get(&origin)
                .filter(|(made, _)| made.elapsed() < SIGNATURE_REUSE)
                .map(|(_, s)| s.clone())
        };
        if let Some(s) = cached(&self.signatures.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(s);
        }
        let mut signer = self.key.clone().add_sub_info(info);
        signer.add_claim("sub", self.subject.as_str());
        // web-push leaves a non-default port out of the audience; RFC 8292 wants the full origin.
        signer.add_claim("aud", origin.as_str());
        let signature = signer.build()?;
        let mut signatures = self.signatures.lock().unwrap_or_else(|p| p.into_inner());
        if signatures.len() >= SIGNED_ORIGINS {
            signatures.clear();
        }
        signatures.insert(origin, (Instant::now(), signature.clone()));
        Ok(signature)
    }

    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Claims the due push deliveries, sends them, records each outcome. Returns how many it
    /// handled.
    pub async fn deliver_due(&self, pool: &PgPool) -> Result<usize, atiende_core::Error> {
        outbox::deliver_due(pool, self).await
    }

    async fn push(&self, d: &Claimed) -> Outcome {
        let (Some(p256dh), Some(auth)) = (&d.p256dh, &d.auth) else {
            return Outcome::Gone {
                status: 0,
                error: "the subscription was removed".into(),
            };
        };
        // Rows older than the registration check, or a setting since narrowed, are checked again.
        let Ok(endpoint) = PushEndpoint::parse(&d.target, self.reach) else {
            return Outcome::Failed {
                status: None,
                error: "the endpoint is not a public https push service".into(),
            };
        };
        let (title, body) = atiende_core::texts::push(&d.language, &d.kind, &d.data);
        let field = |k: &str| d.data.get(k).cloned().unwrap_or(serde_json::Value::Null);
        let payload = serde_json::json!({
            "kind": d.kind,
            "title": title,
            "body": body,
            "case_id": d.case_id,
            "radicado": field("radicado"),
            "deadline": d.data.get("due").or_else(|| d.data.get("due_date")).cloned(),
        })
        .to_string();
        let recipient = match Recipient::new(p256dh, auth) {
            Ok(r) => r,
            // The subscription's keys cannot be used: retrying will not fix them.
            Err(e) => {
                return Outcome::Failed {
                    status: None,
                    error: format!("encrypting: {e}"),
                };
            }
        };
        let info = SubscriptionInfo::new(endpoint.as_str(), p256dh.as_str(), auth.as_str());
        let signature = match self.signature(&endpoint, &info) {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Failed {
                    status: None,
                    error: format!("signing: {e}"),
                };
            }
        };
        // Encrypting is the costly part of a send: on the blocking pool, the worker's other sends
        // and the rest of the server go on meanwhile, on every core.
        let rng = self.rng.clone();
        let body = match tokio::task::spawn_blocking(move || {
            push_payload::encrypt(&rng, &recipient, payload.as_bytes())
        })
        .await
        {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                return Outcome::Failed {
                    status: None,
                    error: format!("encrypting: {e}"),
                };
            }
            Err(e) => {
                return Outcome::Retry {
                    status: None,
                    error: format!("encrypting: {e}"),
                    after: backoff(d.attempts),
                    progress: None,
                };
            }
        };
        let authorization = format!(
            "vapid t={}, k={}",
            signature.auth_t,
            URL_SAFE_NO_PAD.encode(&signature.auth_k)
        );
        let request = self
            .client
            .post(endpoint.as_str())
            .header("TTL", u32::try_from(d.ttl_secs).unwrap_or(0).to_string())
            .header("Urgency", d.urgency.as_str())
            .header("Content-Type", "application/octet-stream")
            .header("Content-Encoding", "aes128gcm")
            .header("Authorization", authorization)
            .body(body);
        match request.send().await {
            Ok(response) => classify(
                response.status().as_u16(),
                retry_after(response.headers()),
                d.attempts,
            ),
            Err(e) => Outcome::Retry {
                status: None,
                error: format!("network: {}", without_url(e)),
                after: backoff(d.attempts),
                progress: None,
            },
        }
    }
}

/// A request error and its causes, without the URL reqwest puts in its message.
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// What a push service's status means (RFC 8030 §5, and the services' documented practice).
fn classify(status: u16, retry_after: Option<Duration>, attempts: i32) -> Outcome {
    match status {
        200..=299 => Outcome::Sent {
            status,
            external_id: None,
        },
        // Redirects are not followed: one is a refusal like any other.
        404 | 410 => Outcome::Gone {
            status,
            error: format!("the push service answered {status}: the subscription expired"),
        },
        429 | 500..=599 => Outcome::Retry {
            status: Some(status),
            error: format!("push service answered {status}"),
            after: retry_after.unwrap_or_else(|| backoff(attempts)),
            progress: None,
        },
        _ => Outcome::Failed {
            status: Some(status),
            error: format!("push service refused the message with {status}"),
        },
    }
}

/// `Retry-After` in seconds (the form push services use); an HTTP date is read as "later".
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    match value.trim().parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs.min(24 * 3600))),
        Err(_) => Some(Duration::from_secs(60)),
    }
}

/// A new VAPID key pair, base64url: (private key for the settings, public key for the apps).
pub fn generate_keys() -> Result<(String, String), PushError> {
    let (pair, _) = ece::generate_keypair_and_auth_secret()
        .map_err(|e| PushError::KeyGeneration(e.to_string()))?;
    let components = pair
        .raw_components()
        .map_err(|e| PushError::KeyGeneration(e.to_string()))?;
    // The scalar comes without leading zero bytes; keys are exactly 32 bytes.
    let scalar = components.private_key();
    let mut private = vec![0u8; 32usize.saturating_sub(scalar.len())];
    private.extend_from_slice(scalar);
    Ok((
        URL_SAFE_NO_PAD.encode(private),
        URL_SAFE_NO_PAD.encode(components.public_key()),
    ))
}

impl outbox::Sender for PushSender {
    fn channel(&self) -> Channel {
        Channel::Push
    }

    async fn send(&self, delivery: &Claimed) -> Outcome {
        self.push(delivery).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(
            classify(201, None, 1),
            Outcome::Sent {
                status: 201,
                external_id: None
            }
        );
        assert!(matches!(
            classify(410, None, 1),
            Outcome::Gone { status: 410, .. }
        ));
        assert!(
            matches!(classify(429, Some(Duration::from_secs(120)), 1), Outcome::Retry { after, .. } if after == Duration::from_secs(120))
        );
        assert!(
            matches!(classify(503, None, 3), Outcome::Retry { after, .. } if after == Duration::from_secs(8))
        );
        assert!(matches!(classify(400, None, 1), Outcome::Failed { .. }));
        assert_eq!(backoff(50), Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn names_that_resolve_to_this_machine_are_refused() {
        use reqwest::dns::Resolve;
        let name = || "localhost".parse::<reqwest::dns::Name>().expect("a name");
        let refused = PublicResolver::new(Reach::Public).resolve(name()).await;
        assert!(
            refused.is_err_and(|e| e.to_string().contains("no public address")),
            "localhost is loopback"
        );
        let allowed = PublicResolver::new(Reach::PublicAndLoopback)
            .resolve(name())
            .await
            .expect("loopback allowed");
        assert!(allowed.into_iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn one_signature_serves_every_subscription_of_a_push_service() {
        let (private, _) = generate_keys().expect("keys");
        let sender =
            PushSender::new(&private, "mailto:ops@example.com", Reach::Public).expect("sender");
        // The keys of a subscription do not enter the signature.
        let sign = |endpoint: &str| {
            let endpoint = PushEndpoint::parse(endpoint, Reach::Public).expect("endpoint");
            let info = SubscriptionInfo::new(endpoint.as_str(), "unused", "unused");
            sender.signature(&endpoint, &info).expect("signed").auth_t
        };
        let first = sign("https://fcm.googleapis.com/fcm/send/device-one");
        assert_eq!(
            sign("https://fcm.googleapis.com/fcm/send/device-two"),
            first
        );
        let other = sign("https://updates.push.services.mozilla.com/wpush/v2/device");
        assert_ne!(other, first);
        assert_ne!(
            sign("https://fcm.googleapis.com:8443/fcm/send/device"),
            first
        );
    }

    #[test]
    fn generated_keys_sign() {
        let (private, public) = generate_keys().expect("keys");
        let sender =
            PushSender::new(&private, "mailto:ops@example.com", Reach::Public).expect("sender");
        assert_eq!(sender.public_key(), public);
        assert!(PushSender::new("not a key", "mailto:x@example.com", Reach::Public).is_err());
    }
}
