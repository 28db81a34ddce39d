//! What a delivery says in a chat: a conversation's own reply as the engine wrote it, or a case's
//! notification written out in the chat's language (with the answer itself, and the rating
//! choices under it), split into parts a platform accepts.

use atiende_core::outbox::{Claimed, REPLY};
use atiende_core::types::CaseType;

use crate::engine::{Reply, rating_choices};
use crate::texts::{bot, bot_with};

/// The longest text one Telegram or WhatsApp message carries, in characters.
pub const MESSAGE_LIMIT: usize = 4096;

/// The reply a claimed delivery carries, or its notification rendered for the chat.
pub fn delivery(d: &Claimed) -> Reply {
    if d.kind == REPLY {
        return serde_json::from_value(d.data.clone())
            .unwrap_or_else(|_| Reply::text(bot(&d.language, "error")));
    }
    notice(&d.language, &d.kind, &d.data, d.case_id)
}

/// A case's notification as a chat message.
pub fn notice(
    lang: &str,
    kind: &str,
    data: &serde_json::Value,
    case_id: Option<uuid::Uuid>,
) -> Reply {
    let field = |k: &str| atiende_core::texts::data_text(data, k);
    let case_type = field("type")
        .parse::<CaseType>()
        .map(|t| atiende_core::texts::case_type(lang, t))
        .unwrap_or_default();
    let date = |k: &str| atiende_core::texts::data_date(lang, data, k);
    let radicado = field("radicado");
    let rating = |text: String| Reply {
        text,
        choices: case_id.map(rating_choices).unwrap_or_default(),
        ask_contact: false,
    };
    match kind {
        "acknowledgement" => Reply::text(
            match (field("type").parse::<CaseType>(), field("due_date").parse()) {
                (Ok(t), Ok(due)) => atiende_core::texts::acknowledgement(lang, t, &radicado, due),
                _ => atiende_core::texts::push(lang, kind, data).1,
            },
        ),
        "answer" => rating(format!(
            "{}\n\n{}",
            bot_with(
                lang,
                "answer",
                &[
                    ("case_type", &case_type),
                    ("radicado", &radicado),
                    ("answer", &field("answer")),
                ]
            ),
            bot(lang, "rate_prompt")
        )),
        "rating_prompt" => rating(atiende_core::texts::rating_prompt(lang, &radicado)),
        "survey_invitation" | "survey_reminder" => crate::survey::notice(lang, kind, data),
        "information_request" => Reply::text(bot_with(
            lang,
            "information_request",
            &[
                ("case_type", &case_type),
                ("radicado", &radicado),
                ("question", &field("question")),
            ],
        )),
        "staff_message" => Reply::text(bot_with(
            lang,
            "staff_message",
            &[("radicado", &radicado), ("message", &field("message"))],
        )),
        "extension" => Reply::text(bot_with(
            lang,
            "extension",
            &[
                ("case_type", &case_type),
                ("radicado", &radicado),
                ("due_date", &date("due_date")),
                ("reason", &field("reason")),
            ],
        )),
        _ => {
            let (title, body) = atiende_core::texts::push(lang, kind, data);
            Reply::text(format!("{title}\n\n{body}"))
        }
    }
}

/// Splits a text into parts of at most `limit` characters, at paragraph boundaries where it can
/// (then at line ends, then at spaces, then anywhere), numbering them "(1/3)" when there are
/// several.
pub fn split(lang: &str, text: &str, limit: usize) -> Vec<String> {
    if text.chars().count() <= limit {
        return vec![text.to_owned()];
    }
    // Room for the " (12/34)" each part ends with.
    let room = limit.saturating_sub(12).max(1);
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    for paragraph in text.split("\n\n") {
        for piece in pieces(paragraph, room) {
            let joined = if current.is_empty() {
                piece.len()
            } else {
                current.chars().count() + 2 + piece.chars().count()
            };
            if !current.is_empty() && joined > room {
                parts.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push_str("\n\n");
            }
            current.push_str(&piece);
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    let total = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let n = (i + 1).to_string();
            let t = total.to_string();
            format!(
                "{p} {}",
                bot_with(lang, "part", &[("n", &n), ("total", &t)])
            )
        })
        .collect()
}

/// A paragraph in pieces of at most `room` characters: whole lines, words, or characters.
fn pieces(paragraph: &str, room: usize) -> Vec<String> {
    if paragraph.chars().count() <= room {
        return vec![paragraph.to_owned()];
    }
    let mut out = Vec::new();
    let mut current = String::new();
    let mut len = 0;
    let mut push_word = |word: &str, sep: char, out: &mut Vec<String>| {
        let wlen = word.chars().count();
        if len > 0 && len + 1 + wlen > room {
            out.push(std::mem::take(&mut current));
            len = 0;
        }
        if wlen > room {
            // A word longer than a part: cut it anywhere.
            let chars: Vec<char> = word.chars().collect();
            for chunk in chars.chunks(room) {
                if len > 0 {
                    out.push(std::mem::take(&mut current));
                }
                current = chunk.iter().collect();
                len = chunk.len();
            }
            return;
        }
        if len > 0 {
            current.push(sep);
            len += 1;
        }
        current.push_str(word);
        len += wlen;
    };
    for (i, line) in paragraph.split('\n').enumerate() {
        for (j, word) in line.split(' ').enumerate() {
            let sep = if j == 0 && i > 0 { '\n' } else { ' ' };
            push_word(word, sep, &mut out);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_stay_whole() {
        assert_eq!(split("es", "Hola", 4096), vec!["Hola".to_owned()]);
    }

    #[test]
    fn long_texts_split_at_paragraphs_numbered_in_order() {
        let para = |c: char| std::iter::repeat_n(c, 3000).collect::<String>();
        let text = format!("{}\n\n{}\n\n{}", para('a'), para('b'), para('c'));
        let parts = split("es", &text, MESSAGE_LIMIT);
        assert_eq!(parts.len(), 3);
        for (i, p) in parts.iter().enumerate() {
            assert!(p.chars().count() <= MESSAGE_LIMIT, "part {i} too long");
            assert!(p.ends_with(&format!("({}/3)", i + 1)), "{p:.20}");
        }
        assert!(parts[0].starts_with('a') && parts[1].starts_with('b'));
        // Nothing is lost.
        let letters: usize = parts
            .iter()
            .map(|p| p.chars().filter(|c| matches!(c, 'a' | 'b' | 'c')).count())
            .sum();
        assert_eq!(letters, 9000);
    }

    #[test]
    fn one_huge_paragraph_is_cut_by_words_then_anywhere() {
        let words = "palabra ".repeat(1500);
        let parts = split("en", words.trim(), MESSAGE_LIMIT);
        assert!(parts.len() >= 3);
        assert!(parts.iter().all(|p| p.chars().count() <= MESSAGE_LIMIT));
        let blob: String = std::iter::repeat_n('x', 10_000).collect();
        let parts = split("en", &blob, MESSAGE_LIMIT);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= MESSAGE_LIMIT));
    }

    #[test]
    fn an_answer_carries_its_text_and_the_rating_choices() {
        let case = uuid::Uuid::nil();
        let data = serde_json::json!({"radicado": "PQRS-2026-000004", "type": "reclamo", "answer": "Cambiamos el medidor."});
        let reply = notice("es", "answer", &data, Some(case));
        assert!(reply.text.contains("PQRS-2026-000004"));
        assert!(reply.text.contains("Cambiamos el medidor."));
        assert_eq!(reply.choices.len(), 5);
        assert_eq!(reply.choices[4].id, format!("rate:{case}:5"));
        let ack = serde_json::json!({"radicado": "PQRS-2026-000004", "type": "queja", "due_date": "2026-12-22"});
        assert_eq!(
            notice("en", "acknowledgement", &ack, Some(case)).text,
            "We received your complaint with filing number PQRS-2026-000004. We will answer by December 22, 2026 at the latest."
        );
    }
}
