//! What an e-mail about a case says, in the customer's language (texts in `locales/mail.yml`):
//! the radicado in the subject, the notice itself with what staff wrote in full, and the case's
//! secret link.

use atiende_core::calendar::COLOMBIA;
use atiende_core::texts::{
    LANGUAGES, acknowledgement, case_type, data_date, data_text, long_date, push,
};
use atiende_core::types::CaseType;
use chrono::{DateTime, NaiveDate, Utc};

/// An e-mail ready to be sent: its subject, its plain-text body and the same as HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Who the e-mail is for and where their case lives.
pub struct Addressee<'a> {
    pub name: &'a str,
    pub language: &'a str,
    /// The case's secret page, when the notice is about a case.
    pub link: Option<&'a str>,
}

fn lang(language: &str) -> &str {
    if LANGUAGES.contains(&language) {
        language
    } else {
        "es"
    }
}

/// The text `mail.{key}` in language `l` with its placeholders filled.
pub(crate) fn text(l: &str, key: &str, vars: &[(&str, &str)]) -> String {
    let key = format!("mail.{key}");
    let mut out = rust_i18n::t!(&key, locale = l).into_owned();
    // One pass over the template's own placeholders: a customer's or staff's text that contains
    // `%{…}` is written as it is.
    for (name, value) in vars {
        out = out.replacen(&format!("%{{{name}}}"), &value.replace('%', "\u{0}"), 1);
    }
    out.replace('\u{0}', "%")
}

/// The e-mail for notification `kind` with its stored `data`.
pub fn render(to: &Addressee<'_>, kind: &str, data: &serde_json::Value) -> Rendered {
    let l = lang(to.language);
    let field = |k: &str| data_text(data, k);
    let radicado = field("radicado");
    let kind_of_case = field("type").parse::<CaseType>().ok();
    let type_name = kind_of_case.map(|t| case_type(l, t)).unwrap_or_default();
    let date = |k: &str| data_date(l, data, k);
    let case_vars = [
        ("radicado", radicado.as_str()),
        ("case_type", type_name.as_str()),
    ];
    let subject_key = match kind {
        "acknowledgement"
        | "extension"
        | "answer"
        | "information_request"
        | "staff_message"
        | "rating_prompt"
        | "link_code"
        | "account_setup" => format!("subject.{kind}"),
        _ => "subject.other".to_owned(),
    };
    let (title, fallback_body) = push(l, kind, data);
    let mut subject_vars = case_vars.to_vec();
    subject_vars.push(("title", title.as_str()));
    // A notice this crate has no subject of its own for: the push title, with the radicado.
    let subject = if subject_key == "subject.other" && title.contains(&radicado) {
        title.clone()
    } else {
        text(l, &subject_key, &subject_vars)
    };

    let mut paragraphs = vec![text(l, "greeting", &[("name", to.name)])];
    match kind {
        "acknowledgement" => paragraphs.push(
            match (kind_of_case, field("due_date").parse::<NaiveDate>()) {
                (Some(t), Ok(due)) => acknowledgement(l, t, &radicado, due),
                _ => fallback_body,
            },
        ),
        "extension" => {
            let due = date("due_date");
            let reason = field("reason");
            let mut vars = case_vars.to_vec();
            vars.extend([("due_date", due.as_str()), ("reason", reason.as_str())]);
            paragraphs.push(text(l, "extension", &vars));
        }
        "answer" => {
            paragraphs.push(text(l, "answer", &case_vars));
            paragraphs.push(field("answer"));
            paragraphs.push(text(l, "answer_rate", &[]));
        }
        "information_request" => {
            paragraphs.push(text(l, "information_request", &case_vars));
            paragraphs.push(field("question"));
            paragraphs.push(text(l, "information_request_reply", &[]));
        }
        "staff_message" => {
            paragraphs.push(text(l, "staff_message", &case_vars));
            paragraphs.push(field("message"));
        }
        "rating_prompt" => {
            paragraphs.push(atiende_core::texts::rating_prompt(l, &radicado));
            paragraphs.push(text(l, "rating_prompt", &[]));
        }
        "link_code" => {
            let minutes = field("minutes");
            paragraphs.push(text(l, "link_code", &case_vars));
            paragraphs.push(field("code"));
            paragraphs.push(text(
                l,
                "link_code_expires",
                &[("minutes", minutes.as_str())],
            ));
            paragraphs.push(text(l, "link_code_not_you", &[]));
        }
        "account_setup" => {
            let login = field("email");
            paragraphs.push(text(l, "account_setup", &[("email", login.as_str())]));
            // Written in Colombia's time, where the company is.
            let expires = field("expires_at")
                .parse::<DateTime<Utc>>()
                .map(|at| at.with_timezone(&COLOMBIA))
                .ok();
            let date = expires.map(|at| long_date(l, at.date_naive()));
            let time = expires.map(|at| at.format("%H:%M").to_string());
            let vars = [
                ("date", date.as_deref().unwrap_or_default()),
                ("time", time.as_deref().unwrap_or_default()),
            ];
            paragraphs.push(format!(
                "{}\n{}",
                text(l, "account_setup_link", &vars),
                field("link")
            ));
            paragraphs.push(text(l, "account_setup_ignore", &[]));
        }
        _ => paragraphs.push(fallback_body),
    }
    // A link code goes to the customer on file, who may not be whoever filed: never with a case's
    // link.
    let link = to.link.filter(|_| kind != "link_code");
    if let Some(link) = link {
        paragraphs.push(format!("{}\n{link}", text(l, "link", &[])));
        paragraphs.push(text(l, "link_secret", &[]));
    }
    let automatic = if kind == "account_setup" {
        "automatic_account"
    } else {
        "automatic"
    };
    paragraphs.push(format!(
        "{}\n-- \n{}",
        text(l, "signature", &[]),
        text(l, automatic, &[])
    ));
    paragraphs.retain(|p| !p.trim().is_empty());
    let subject = subject.replace(['\r', '\n'], " ");
    // The link to set a password is the one to click in an `account_setup` e-mail.
    let setup_link = field("link");
    let link = to
        .link
        .or((kind == "account_setup" && !setup_link.is_empty()).then_some(setup_link.as_str()));
    let html = html(l, &subject, &paragraphs, link);
    Rendered {
        subject,
        text: paragraphs.join("\n\n"),
        html,
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The same paragraphs as a small HTML page, everything escaped, the case's link clickable.
fn html(l: &str, subject: &str, paragraphs: &[String], link: Option<&str>) -> String {
    let anchor = link.map(|link| {
        let link = escape(link);
        (link.clone(), format!("<a href=\"{link}\">{link}</a>"))
    });
    let body: String = paragraphs
        .iter()
        .map(|p| {
            let mut p = escape(p).replace('\n', "<br>\n");
            if let Some((link, a)) = &anchor {
                p = p.replace(link.as_str(), a);
            }
            format!("<p>{p}</p>\n")
        })
        .collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"{l}\">\n<head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n{body}</body>\n</html>\n",
        escape(subject)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use atiende_core::notifications::Kind;

    fn to<'a>(language: &'a str, link: Option<&'a str>) -> Addressee<'a> {
        Addressee {
            name: "Ana Pérez",
            language,
            link,
        }
    }

    #[test]
    fn every_kind_reads_in_both_languages_with_the_radicado_in_the_subject() {
        let data = serde_json::json!({"radicado": "PQRS-2026-000001", "type": "queja", "question": "¿Cuál es su dirección?", "message": "Hola", "answer": "Ya quedó resuelto.", "due_date": "2026-12-07", "reason": "Laboratorio", "clock": "legal", "percent": 50, "due": "2026-12-07 10:00", "code": "042917", "minutes": "15"});
        for &l in LANGUAGES {
            for kind in Kind::ALL {
                if kind == Kind::AccountSetup {
                    // No case: its own link and subject (the test below).
                    continue;
                }
                let mail = render(
                    &to(l, Some("https://pqrs.example.co/pqrs/caso/pqrs_x")),
                    kind.as_str(),
                    &data,
                );
                assert!(
                    mail.subject.contains("PQRS-2026-000001") && !mail.subject.contains("042917"),
                    "{l} {kind:?}: {}",
                    mail.subject
                );
                for t in [&mail.subject, &mail.text] {
                    assert!(
                        !t.contains("mail.") && !t.contains("%{"),
                        "{l} {kind:?}: {t}"
                    );
                }
                assert_eq!(
                    mail.text
                        .contains("https://pqrs.example.co/pqrs/caso/pqrs_x"),
                    kind != Kind::LinkCode,
                    "{l} {kind:?}: a link code never carries a case's link"
                );
                assert!(mail.text.contains("Ana Pérez"));
            }
        }
    }

    #[test]
    fn the_account_setup_mail_has_the_link_and_its_expiry_and_no_secret_in_the_subject() {
        let link = "https://pqrs.example.co/cuenta/clave/acct_0123abcd";
        let data = serde_json::json!({"setup_id": "7a0e2f64-6d4f-4a57-9f0e-2b8f6d1c3e55", "email": "ana@example.co", "link": link, "expires_at": "2026-12-08T15:00:00Z"});
        for (l, subject, expiry) in [
            (
                "es",
                "Su usuario de la aplicación: elija su contraseña",
                "vence el 8 de diciembre de 2026 a las 10:00",
            ),
            (
                "en",
                "Your app account: choose your password",
                "expires on December 8, 2026 at 10:00",
            ),
        ] {
            let mail = render(&to(l, None), "account_setup", &data);
            assert_eq!(mail.subject, subject);
            assert!(mail.text.contains(link), "{}", mail.text);
            assert!(mail.text.contains("ana@example.co"), "{}", mail.text);
            assert!(mail.text.contains(expiry), "{}", mail.text);
            assert!(mail.text.contains("Ana Pérez"), "{}", mail.text);
            assert!(
                !mail.text.contains("%{") && !mail.text.contains("mail."),
                "{}",
                mail.text
            );
            assert!(
                mail.html
                    .contains(&format!("<a href=\"{link}\">{link}</a>")),
                "{}",
                mail.html
            );
        }
    }

    #[test]
    fn spanish_and_english_and_what_staff_wrote_in_full() {
        let data = serde_json::json!({"radicado": "PQRS-2026-000009", "type": "reclamo", "answer": "a".repeat(2000)});
        let es = render(&to("es", None), "answer", &data);
        assert_eq!(
            es.subject,
            "Radicado PQRS-2026-000009: respuesta a su reclamo"
        );
        assert!(es.text.contains(&"a".repeat(2000)), "the whole answer");
        let en = render(&to("en", None), "answer", &data);
        assert_eq!(en.subject, "PQRS-2026-000009: the answer to your claim");
        assert!(en.text.starts_with("Hello Ana Pérez,"), "{}", en.text);
        let fr = render(&to("fr", None), "answer", &data);
        assert_eq!(fr.subject, es.subject, "unknown languages read Spanish");
    }

    #[test]
    fn the_html_part_escapes_what_people_wrote_and_links_the_case() {
        let data = serde_json::json!({"radicado": "PQRS-2026-000009", "type": "reclamo", "message": "<script>alert('x')</script> & más\notra línea"});
        let link = "https://pqrs.example.co/pqrs/caso/pqrs_abc";
        let mail = render(&to("es", Some(link)), "staff_message", &data);
        assert!(!mail.html.contains("<script>"), "{}", mail.html);
        assert!(
            mail.html.contains(
                "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; más<br>\notra línea"
            ),
            "{}",
            mail.html
        );
        assert!(
            mail.html
                .contains(&format!("<a href=\"{link}\">{link}</a>")),
            "{}",
            mail.html
        );
        assert!(mail.html.starts_with("<!DOCTYPE html>\n<html lang=\"es\">"));
    }

    #[test]
    fn a_link_code_says_who_asked_and_keeps_the_code_out_of_the_subject() {
        let data =
            serde_json::json!({"radicado": "PQRS-2026-000042", "code": "042917", "minutes": "15"});
        let es = render(&to("es", None), "link_code", &data);
        assert_eq!(
            es.subject,
            "Código para vincular la solicitud PQRS-2026-000042 a su registro"
        );
        assert!(
            es.text.contains("\n\n042917\n\nVence en 15 minutos "),
            "{:?}",
            es.text
        );
        assert!(es.text.contains("Si no fue usted"), "{}", es.text);
        let en = render(&to("en", None), "link_code", &data);
        assert!(!en.subject.contains("042917"), "{}", en.subject);
        assert!(en.text.contains("PQRS-2026-000042"), "{}", en.text);
        assert!(en.text.contains("If it was not you"), "{}", en.text);
    }

    #[test]
    fn placeholders_in_what_people_wrote_stay_as_written() {
        let data = serde_json::json!({"radicado": "PQRS-2026-000009", "type": "reclamo", "message": "100% listo %{radicado}"});
        let mail = render(
            &Addressee {
                name: "%{name}",
                language: "es",
                link: None,
            },
            "staff_message",
            &data,
        );
        assert!(
            mail.text.contains("100% listo %{radicado}"),
            "{}",
            mail.text
        );
        assert!(mail.text.starts_with("Hola, %{name}:"), "{}", mail.text);
    }
}
