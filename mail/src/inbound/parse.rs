//! What an incoming e-mail says, read with `mail-parser`: who wrote, what it answers, its text,
//! its attachments, and whether a machine wrote it (an auto-reply, a bounce, a list).
//!
//! The parser is lenient: malformed MIME, unknown charsets (read as UTF-8, replacing what cannot
//! be read) and HTML-only mail (turned into text) all give a message to file.

use mail_parser::{HeaderValue, MessageParser, MimeHeaders};

/// One incoming e-mail.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    /// Its `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
    /// The ids it answers (`In-Reply-To`, then `References`, newest first), without brackets.
    pub answers: Vec<String>,
    /// The sender's address, lower-cased, when it is one.
    pub from: Option<String>,
    pub from_name: Option<String>,
    pub subject: String,
    /// The text body; an HTML-only message's text.
    pub text: String,
    pub attachments: Vec<Attachment>,
    /// Written by a machine: nothing is filed and nothing answers it. The reason says which sign.
    pub automatic: Option<&'static str>,
    /// The receiving server said the sender's domain did not authenticate it (SPF, DKIM or DMARC
    /// `fail`): the `From` address is not trusted to name a customer.
    pub unauthenticated: bool,
}

#[derive(Debug, Clone)]
pub struct Attachment {
    /// The file name the sender gave, or a name made from its type.
    pub name: String,
    /// The declared type, such as `application/pdf`.
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// The `Message-ID` of a message, reading its header only.
pub fn message_id(raw: &[u8]) -> Option<String> {
    MessageParser::default()
        .parse_headers(raw)
        .and_then(|m| m.message_id().map(|id| id.trim().to_owned()))
        .filter(|id| !id.is_empty() && id.len() <= 998)
}

/// Reads a message. Bytes that are not a message at all (empty) give one with no sender.
pub fn parse(raw: &[u8]) -> Incoming {
    let Some(message) = MessageParser::default().parse(raw) else {
        return Incoming::default();
    };
    let ids = |value: &HeaderValue<'_>| -> Vec<String> {
        match value {
            HeaderValue::Text(t) => vec![t.to_string()],
            HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
            _ => Vec::new(),
        }
    };
    let mut answers = ids(message.in_reply_to());
    let mut references = ids(message.references());
    references.reverse();
    for r in references {
        if !answers.contains(&r) {
            answers.push(r);
        }
    }
    answers.retain(|id| !id.is_empty() && id.len() <= 998);
    let sender = message.from().and_then(|a| a.first());
    let from = sender
        .and_then(|a| a.address())
        .map(|a| a.trim().to_lowercase())
        .filter(|a| atiende_core::auth::parse_email(a).is_ok());
    let from_name = sender.and_then(|a| a.name()).map(|n| n.trim().to_owned());
    let text = message
        .body_text(0)
        .map(|t| t.into_owned())
        .unwrap_or_default();
    let mut attachments = Vec::new();
    for (n, part) in message.attachments().enumerate() {
        let content_type = part
            .content_type()
            .map(|c| match c.subtype() {
                Some(sub) => format!("{}/{}", c.ctype(), sub),
                None => c.ctype().to_owned(),
            })
            .unwrap_or_else(|| "application/octet-stream".to_owned())
            .to_ascii_lowercase();
        let name = part
            .attachment_name()
            .map(|n| n.chars().filter(|c| !c.is_control()).take(200).collect())
            .filter(|n: &String| !n.trim().is_empty())
            .unwrap_or_else(|| format!("adjunto-{}", n + 1));
        attachments.push(Attachment {
            name,
            content_type,
            bytes: part.contents().to_vec(),
        });
    }
    Incoming {
        message_id: message
            .message_id()
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty() && id.len() <= 998),
        answers,
        from,
        from_name: from_name.filter(|n| !n.is_empty()),
        subject: message
            .subject()
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        text,
        attachments,
        automatic: automatic(&message),
        unauthenticated: unauthenticated(&message),
    }
}

fn header_text<'a>(message: &'a mail_parser::Message<'_>, name: &str) -> Option<&'a str> {
    message
        .headers_raw()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// The signs of a message no person wrote (RFC 3834, RFC 3464 and what mail programs add).
fn automatic(message: &mail_parser::Message<'_>) -> Option<&'static str> {
    let lower = |name: &str| header_text(message, name).map(|v| v.to_ascii_lowercase());
    if lower("Auto-Submitted").is_some_and(|v| !v.starts_with("no")) {
        return Some("Auto-Submitted");
    }
    if lower("Precedence").is_some_and(|v| matches!(v.as_str(), "bulk" | "junk" | "list")) {
        return Some("Precedence");
    }
    if ["X-Autoreply", "X-Autorespond"]
        .iter()
        .any(|name| header_text(message, name).is_some())
    {
        return Some("X-Autoreply");
    }
    if lower("List-Id").is_some() || lower("List-Unsubscribe").is_some() {
        return Some("List-Id");
    }
    let report = message.root_part().content_type().is_some_and(|c| {
        c.ctype().eq_ignore_ascii_case("multipart")
            && c.subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    if report {
        return Some("delivery report");
    }
    // A bounce comes from the null sender.
    if message
        .return_address()
        .is_some_and(|r| r.trim().is_empty())
        || header_text(message, "Return-Path").is_some_and(|r| r == "<>")
    {
        return Some("null sender");
    }
    let from = message
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(|a| a.to_ascii_lowercase())
        .unwrap_or_default();
    let local = from.split('@').next().unwrap_or_default();
    if matches!(local, "mailer-daemon" | "postmaster") {
        return Some("mailer daemon");
    }
    None
}

/// Whether an `Authentication-Results` header says the sender failed SPF, DKIM or DMARC.
fn unauthenticated(message: &mail_parser::Message<'_>) -> bool {
    message.headers_raw().any(|(name, value)| {
        name.eq_ignore_ascii_case("Authentication-Results") && {
            let v = value.to_ascii_lowercase();
            ["dmarc=fail", "spf=fail", "dkim=fail"]
                .iter()
                .any(|sign| v.contains(sign))
        }
    })
}

/// A radicado named in a subject (`PQRS-2026-000123`), if any.
pub fn radicado_in(subject: &str) -> Option<String> {
    let upper = subject.to_ascii_uppercase();
    let bytes = upper.as_bytes();
    (0..bytes.len()).find_map(|i| {
        let rest = upper.get(i..)?;
        let candidate = rest.get(..16)?;
        let b = candidate.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let after = rest.as_bytes().get(16).is_none_or(|c| !c.is_ascii_digit());
        (boundary
            && after
            && candidate.starts_with("PQRS-")
            && digits(5..9)
            && b[9] == b'-'
            && digits(10..16))
        .then(|| candidate.to_owned())
    })
}

/// A reply's own words: the text above the quoted message it answers, when the rest is a quote
/// (`>` lines, or a mail program's "On … wrote:" header); the whole text otherwise.
pub fn reply_text(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let quote_start = lines.iter().position(|l| {
        let t = l.trim();
        t.starts_with('>')
            || t.starts_with("-----Original Message")
            || t.starts_with("-----Mensaje original")
            || ((t.starts_with("On ") && t.ends_with("wrote:"))
                || (t.starts_with("El ") && t.ends_with("escribió:")))
    });
    let own = match quote_start {
        Some(i) => lines[..i].join("\n"),
        None => text.to_owned(),
    };
    if own.trim().is_empty() {
        text.trim().to_owned()
    } else {
        own.trim().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_reply_with_its_thread() {
        let raw = b"From: Ana Perez <Ana@Example.co>\r\nTo: pqrs@empresa.co\r\nSubject: Re: Radicado PQRS-2026-000012: necesitamos informacion\r\nMessage-ID: <abc@example.co>\r\nIn-Reply-To: <pqrs.7.x@empresa.co>\r\nReferences: <pqrs.1.x@empresa.co> <pqrs.7.x@empresa.co>\r\n\r\nMi direccion es Calle 1.\r\n\r\nEl lun, 1 dic 2026, Servicio escribi\xc3\xb3:\r\n> Necesitamos su direccion\r\n";
        let m = parse(raw);
        assert_eq!(m.from.as_deref(), Some("ana@example.co"));
        assert_eq!(m.from_name.as_deref(), Some("Ana Perez"));
        assert_eq!(m.message_id.as_deref(), Some("abc@example.co"));
        assert_eq!(m.answers, ["pqrs.7.x@empresa.co", "pqrs.1.x@empresa.co"]);
        assert_eq!(radicado_in(&m.subject).as_deref(), Some("PQRS-2026-000012"));
        assert_eq!(reply_text(&m.text), "Mi direccion es Calle 1.");
        assert!(m.automatic.is_none() && !m.unauthenticated);
    }

    #[test]
    fn machines_are_recognised() {
        for (header, sign) in [
            ("Auto-Submitted: auto-replied", "Auto-Submitted"),
            ("Precedence: bulk", "Precedence"),
            ("X-Autoreply: yes", "X-Autoreply"),
            ("List-Id: <ofertas.example.co>", "List-Id"),
            ("Return-Path: <>", "null sender"),
        ] {
            let raw = format!("From: a@example.co\r\n{header}\r\nSubject: x\r\n\r\nhola\r\n");
            assert_eq!(parse(raw.as_bytes()).automatic, Some(sign), "{header}");
        }
        let human = "From: a@example.co\r\nAuto-Submitted: no\r\nSubject: x\r\n\r\nhola\r\n";
        assert_eq!(parse(human.as_bytes()).automatic, None);
    }

    #[test]
    fn html_only_unknown_charset_and_a_failed_dmarc() {
        let raw = b"From: b@example.co\r\nAuthentication-Results: mx.empresa.co; dmarc=fail header.from=example.co\r\nSubject: =?x-unknown?Q?Queja?=\r\nContent-Type: text/html; charset=x-unknown\r\n\r\n<p>El t\xe9cnico <b>no</b> vino</p>\r\n";
        let m = parse(raw);
        assert!(m.text.contains("cnico") && m.text.contains("no") && !m.text.contains("<b>"));
        assert!(m.unauthenticated);
    }

    #[test]
    fn radicados_are_read_whole() {
        assert_eq!(
            radicado_in("pqrs-2026-000001 x").as_deref(),
            Some("PQRS-2026-000001")
        );
        assert_eq!(radicado_in("XPQRS-2026-000001"), None);
        assert_eq!(radicado_in("PQRS-2026-0000012"), None);
        assert_eq!(radicado_in("PQRS-2026-00001"), None);
        assert_eq!(
            radicado_in("Re: ñandú PQRS-2026-000001"),
            Some("PQRS-2026-000001".into())
        );
    }
}
