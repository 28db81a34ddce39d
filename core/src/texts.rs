//! What customers read, in their language, from `locales/` (Spanish first, English too).

use chrono::{Datelike, NaiveDate};

use crate::types::CaseType;

/// The languages texts exist in; anything else falls back to Spanish.
pub const LANGUAGES: &[&str] = &["es", "en"];

fn lang(language: &str) -> &str {
    if LANGUAGES.contains(&language) {
        language
    } else {
        "es"
    }
}

pub fn case_type(language: &str, t: CaseType) -> String {
    let key = format!("case_type.{}", t.as_str());
    rust_i18n::t!(&key, locale = lang(language)).into_owned()
}

/// "7 de diciembre de 2026" / "December 7, 2026".
pub fn long_date(language: &str, date: NaiveDate) -> String {
    let l = lang(language);
    let key = format!("month.{}", date.month());
    let month = rust_i18n::t!(&key, locale = l);
    rust_i18n::t!(
        "long_date",
        locale = l,
        day = date.day(),
        month = month,
        year = date.year()
    )
    .into_owned()
}

/// The acknowledgement a customer gets when a case is filed: radicado and the legal answer date.
pub fn acknowledgement(language: &str, t: CaseType, radicado: &str, due: NaiveDate) -> String {
    let l = lang(language);
    rust_i18n::t!(
        "acknowledgement",
        locale = l,
        case_type = case_type(l, t),
        radicado = radicado,
        due_date = long_date(l, due)
    )
    .into_owned()
}

/// What the customer's inbox shows to ask for a rating of the answer.
pub fn rating_prompt(language: &str, radicado: &str) -> String {
    rust_i18n::t!(
        "inbox.rating_prompt",
        locale = lang(language),
        radicado = radicado
    )
    .into_owned()
}

/// Characters of a staff text a push notification carries: push services take about 4 KB of
/// payload; the whole text is on the case.
const PUSH_EXCERPT: usize = 500;

fn excerpt(text: &str) -> String {
    match text.char_indices().nth(PUSH_EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A text field of a stored notification's data, empty when it is missing.
pub fn data_text(data: &serde_json::Value, key: &str) -> String {
    data.get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A date field of a stored notification's data written out in `language`, or as stored when it is
/// not a date.
pub fn data_date(language: &str, data: &serde_json::Value, key: &str) -> String {
    let raw = data_text(data, key);
    raw.parse::<NaiveDate>()
        .map(|d| long_date(language, d))
        .unwrap_or(raw)
}

/// Title and body of a push notification, rendered from what the outbox stored.
pub fn push(language: &str, kind: &str, data: &serde_json::Value) -> (String, String) {
    let l = lang(language);
    let field = |k: &str| data_text(data, k);
    let radicado = field("radicado");
    let case_type = field("type")
        .parse::<CaseType>()
        .map(|t| case_type(l, t))
        .unwrap_or_default();
    let date = |k: &str| data_date(l, data, k);
    match kind {
        "acknowledgement" => {
            let title = rust_i18n::t!(
                "push.acknowledgement.title",
                locale = l,
                radicado = radicado
            )
            .into_owned();
            let body = field("type")
                .parse::<CaseType>()
                .ok()
                .zip(field("due_date").parse::<NaiveDate>().ok())
                .map(|(t, due)| acknowledgement(l, t, &radicado, due))
                .unwrap_or_default();
            (title, body)
        }
        "extension" => (
            rust_i18n::t!("push.extension.title", locale = l, radicado = radicado).into_owned(),
            rust_i18n::t!(
                "push.extension.body",
                locale = l,
                case_type = case_type,
                radicado = radicado,
                due_date = date("due_date"),
                reason = field("reason")
            )
            .into_owned(),
        ),
        "answer" => (
            rust_i18n::t!("push.answer.title", locale = l, case_type = case_type).into_owned(),
            rust_i18n::t!("push.answer.body", locale = l, radicado = radicado).into_owned(),
        ),
        "information_request" => (
            rust_i18n::t!(
                "push.information_request.title",
                locale = l,
                radicado = radicado
            )
            .into_owned(),
            rust_i18n::t!(
                "push.information_request.body",
                locale = l,
                case_type = case_type,
                radicado = radicado,
                question = excerpt(&field("question"))
            )
            .into_owned(),
        ),
        "staff_message" => (
            rust_i18n::t!("push.staff_message.title", locale = l, radicado = radicado).into_owned(),
            excerpt(&field("message")),
        ),
        "reclassification" => (
            rust_i18n::t!(
                "push.reclassification.title",
                locale = l,
                radicado = radicado
            )
            .into_owned(),
            rust_i18n::t!(
                "push.reclassification.body",
                locale = l,
                radicado = radicado,
                previous_type = field("previous_type")
                    .parse::<CaseType>()
                    .map(|t| self::case_type(l, t))
                    .unwrap_or_default(),
                case_type = case_type,
                due_date = date("due_date")
            )
            .into_owned(),
        ),
        "information_reminder" => (
            rust_i18n::t!(
                "push.information_reminder.title",
                locale = l,
                radicado = radicado
            )
            .into_owned(),
            rust_i18n::t!(
                "push.information_reminder.body",
                locale = l,
                case_type = case_type,
                radicado = radicado,
                withdraw_on = date("withdraw_on")
            )
            .into_owned(),
        ),
        "withdrawn" => (
            rust_i18n::t!("push.withdrawn.title", locale = l, radicado = radicado).into_owned(),
            rust_i18n::t!(
                "push.withdrawn.body",
                locale = l,
                case_type = case_type,
                radicado = radicado
            )
            .into_owned(),
        ),
        "rating_prompt" => (
            rust_i18n::t!("push.rating_prompt.title", locale = l, radicado = radicado).into_owned(),
            rating_prompt(l, &radicado),
        ),
        "deadline_warning" | "deadline_breach" => {
            let clock_key = format!("clock.{}", field("clock"));
            let clock = rust_i18n::t!(&clock_key, locale = l).into_owned();
            let percent = data
                .get("percent")
                .and_then(|v| v.as_u64())
                .unwrap_or_default();
            let title_key = format!("push.{kind}.title");
            let body_key = format!("push.{kind}.body");
            (
                rust_i18n::t!(&title_key, locale = l, radicado = radicado).into_owned(),
                rust_i18n::t!(
                    &body_key,
                    locale = l,
                    radicado = radicado,
                    clock = clock,
                    percent = percent,
                    due = field("due")
                )
                .into_owned(),
            )
        }
        "link_code" => (
            rust_i18n::t!("push.link_code.title", locale = l).into_owned(),
            rust_i18n::t!(
                "push.link_code.body",
                locale = l,
                radicado = radicado,
                code = field("code"),
                minutes = field("minutes")
            )
            .into_owned(),
        ),
        "attachments_refused" => (
            rust_i18n::t!(
                "push.attachments_refused.title",
                locale = l,
                radicado = radicado
            )
            .into_owned(),
            rust_i18n::t!(
                "push.attachments_refused.body",
                locale = l,
                radicado = radicado,
                names = field("names"),
                max_mb = field("max_mb")
            )
            .into_owned(),
        ),
        "account_setup" => (
            rust_i18n::t!("push.account_setup.title", locale = l).into_owned(),
            rust_i18n::t!("push.account_setup.body", locale = l).into_owned(),
        ),
        "contract_renewal" => (
            rust_i18n::t!(
                "push.contract_renewal.title",
                locale = l,
                customer = field("customer")
            )
            .into_owned(),
            rust_i18n::t!(
                "push.contract_renewal.body",
                locale = l,
                customer = field("customer"),
                ends_on = date("ends_on")
            )
            .into_owned(),
        ),
        "survey_invitation" => (
            rust_i18n::t!("push.survey_invitation.title", locale = l).into_owned(),
            rust_i18n::t!(
                "push.survey_invitation.body",
                locale = l,
                link = field("link"),
                expires_on = date("expires_on")
            )
            .into_owned(),
        ),
        "survey_reminder" => (
            rust_i18n::t!("push.survey_reminder.title", locale = l).into_owned(),
            rust_i18n::t!(
                "push.survey_reminder.body",
                locale = l,
                link = field("link"),
                expires_on = date("expires_on")
            )
            .into_owned(),
        ),
        "follow_up_opened" => (
            rust_i18n::t!("push.follow_up_opened.title", locale = l).into_owned(),
            rust_i18n::t!(
                "push.follow_up_opened.body",
                locale = l,
                process = field("process"),
                score = data
                    .get("score")
                    .and_then(|v| v.as_i64())
                    .unwrap_or_default()
            )
            .into_owned(),
        ),
        _ => (radicado.clone(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_exists_in_every_language() {
        let date = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap_or_default();
        for &l in LANGUAGES {
            for &t in CaseType::ALL {
                let name = case_type(l, t);
                assert!(!name.contains("case_type."), "{l}: {name}");
            }
            for m in 1..=12 {
                let d = date.with_month(m).unwrap_or(date);
                assert!(
                    !long_date(l, d).contains("month."),
                    "{l}: {}",
                    long_date(l, d)
                );
            }
            let data = serde_json::json!({"radicado": "PQRS-2026-000001", "type": "queja", "question": "¿Cuál es su dirección?", "message": "Hola", "due_date": "2026-12-07", "reason": "Laboratorio", "clock": "legal", "percent": 50, "due": "2026-12-07 10:00", "customer": "Fumigaciones Andinas", "ends_on": "2026-12-31"});
            for kind in crate::notifications::Kind::ALL {
                let (title, body) = push(l, kind.as_str(), &data);
                for text in [&title, &body] {
                    assert!(
                        !text.is_empty() && !text.contains("push.") && !text.contains("%{"),
                        "{l} {}: {text}",
                        kind.as_str()
                    );
                }
            }
            let ack = acknowledgement(l, CaseType::Queja, "PQRS-2026-000001", date);
            assert!(
                ack.contains("PQRS-2026-000001") && !ack.contains("%{"),
                "{l}: {ack}"
            );
        }
    }

    #[test]
    fn spanish_and_english() {
        let date = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap_or_default();
        assert_eq!(
            acknowledgement(
                "es",
                CaseType::SolicitudInformacion,
                "PQRS-2026-000009",
                date
            ),
            "Recibimos su solicitud de información con el radicado PQRS-2026-000009. Le daremos respuesta a más tardar el 7 de diciembre de 2026."
        );
        assert_eq!(long_date("en", date), "December 7, 2026");
        let question = serde_json::json!({"radicado": "PQRS-2026-000009", "type": "reclamo", "question": "¿Cuál es el número del medidor?"});
        assert_eq!(
            push("en", "information_request", &question).1,
            "To go on with your claim PQRS-2026-000009 we need: ¿Cuál es el número del medidor?"
        );
        let long = serde_json::json!({"message": "a".repeat(600)});
        assert_eq!(
            push("es", "staff_message", &long).1.chars().count(),
            PUSH_EXCERPT + 1,
            "a long message is cut for the push service"
        );
        assert_eq!(
            long_date("fr", date),
            "7 de diciembre de 2026",
            "unknown languages fall back to Spanish"
        );
    }
}
