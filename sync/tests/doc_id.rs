//! Document ids against ids made by the real automerge-repo (tests/fixtures/document_ids.json:
//! `generateAutomergeUrl()`, `parseAutomergeUrl()`, `stringifyAutomergeUrl(bytes)`).

use atiende_sync::{DocumentId, DocumentIdError};
use serde_json::Value;
use sha2::{Digest, Sha256};

const IDS: &str = include_str!("fixtures/document_ids.json");

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn js_ids() -> Vec<(String, String, [u8; 16])> {
    let v: Value = serde_json::from_str(IDS).expect("document_ids.json");
    v["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| {
            let bytes: [u8; 16] = unhex(id["hex"].as_str().expect("hex"))
                .try_into()
                .expect("16 bytes");
            (
                id["url"].as_str().expect("url").to_owned(),
                id["documentId"].as_str().expect("documentId").to_owned(),
                bytes,
            )
        })
        .collect()
}

/// bs58check of any payload, for ids of the wrong length.
fn bs58check(payload: &[u8]) -> String {
    let sum = Sha256::digest(Sha256::digest(payload));
    let mut raw = payload.to_vec();
    raw.extend_from_slice(&sum[..4]);
    bs58::encode(raw).into_string()
}

#[test]
fn ids_made_by_automerge_repo_parse_and_print_the_same() {
    let ids = js_ids();
    assert!(ids.len() >= 6);
    for (url, text, bytes) in ids {
        let id = DocumentId::parse(&text).expect("bare id");
        assert_eq!(id.as_bytes(), &bytes, "{text}");
        assert_eq!(DocumentId::parse(&url), Ok(id), "{url}");
        assert_eq!(id.to_string(), text);
        assert_eq!(id.url(), url);
        assert_eq!(DocumentId::from_bytes(bytes), id);
        assert_eq!(text.parse::<DocumentId>(), Ok(id));
    }
}

#[test]
fn the_documented_example_id() {
    let id = DocumentId::parse("automerge:4NMNnkMhL8jXrdJ9jamS58PAVdXu").expect("example");
    assert_eq!(
        id.as_bytes().to_vec(),
        unhex("f1c29c8474c84adeb800be47627d33bf")
    );
    assert_eq!(
        format!("{id:?}"),
        "DocumentId(4NMNnkMhL8jXrdJ9jamS58PAVdXu)"
    );
}

#[test]
fn generated_ids_are_random_v4_uuids_that_round_trip() {
    let a = DocumentId::generate().expect("random");
    let b = DocumentId::generate().expect("random");
    assert_ne!(a, b);
    for id in [a, b] {
        assert_eq!(id.as_bytes()[6] >> 4, 4, "UUID version 4");
        assert_eq!(id.as_bytes()[8] >> 6, 0b10, "RFC 4122 variant");
        assert_eq!(DocumentId::parse(&id.to_string()), Ok(id));
        assert_eq!(DocumentId::parse(&id.url()), Ok(id));
    }
    let id = DocumentId::from_random_bytes([0xff; 16]);
    assert_eq!(id.as_bytes()[6], 0x4f);
    assert_eq!(id.as_bytes()[8], 0xbf);
}

#[test]
fn bad_ids_are_refused() {
    use DocumentIdError::*;
    let good = "4NMNnkMhL8jXrdJ9jamS58PAVdXu";
    assert_eq!(DocumentId::parse(""), Err(Empty));
    assert_eq!(DocumentId::parse("automerge:"), Err(Empty));
    assert_eq!(DocumentId::parse(&"2".repeat(65)), Err(TooLong));
    for bad in ["0", "O", "I", "l", " ", "-", "é"] {
        let text = format!("{}{bad}", &good[..20]);
        assert_eq!(DocumentId::parse(&text), Err(NotBase58), "{text}");
    }
    // one character changed: the checksum no longer matches
    let changed = format!("{}{}", &good[..27], "v");
    assert_eq!(DocumentId::parse(&changed), Err(BadChecksum));
    assert_eq!(DocumentId::parse("1"), Err(BadChecksum));
    // valid bs58check, wrong number of bytes
    assert_eq!(
        DocumentId::parse(&bs58check(&[7; 15])),
        Err(WrongLength { len: 15 })
    );
    assert_eq!(
        DocumentId::parse(&bs58check(&[7; 17])),
        Err(WrongLength { len: 17 })
    );
    assert_eq!(
        DocumentId::parse(&bs58check(&[])),
        Err(WrongLength { len: 0 })
    );
    // a URL with heads names a version, not just the document
    assert_eq!(
        DocumentId::parse(&format!("automerge:{good}#abc")),
        Err(HasHeads)
    );
    // another scheme, or the prefix twice
    assert!(DocumentId::parse(&format!("automerge://{good}")).is_err());
    assert!(DocumentId::parse(&format!("automerge:automerge:{good}")).is_err());
    assert!(DocumentId::parse(&format!("AUTOMERGE:{good}")).is_err());
}

#[test]
fn random_strings_never_panic() {
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let alphabet = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0OIl:#";
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 40) as usize;
        let text: String = (0..len)
            .map(|i| alphabet[((x >> (i % 50)) as usize + i * 7) % alphabet.len()] as char)
            .collect();
        if let Ok(id) = DocumentId::parse(&text) {
            assert_eq!(DocumentId::parse(&id.to_string()), Ok(id));
        }
    }
}
