//! What the bots say, from `locales/` (the `bot.` and `status.` keys), in the conversation's
//! language, which is always passed explicitly.

use atiende_core::texts::LANGUAGES;

/// The conversation's language, or Spanish.
pub fn language(raw: &str) -> &'static str {
    LANGUAGES
        .iter()
        .copied()
        .find(|l| *l == raw)
        .unwrap_or("es")
}

/// The language a platform's hint (Telegram's `language_code`, e.g. `en-GB`) asks for; Spanish
/// when there is none or it is not one the texts exist in.
pub fn from_hint(hint: Option<&str>) -> &'static str {
    let primary = hint
        .and_then(|h| h.split(['-', '_']).next())
        .unwrap_or("")
        .to_ascii_lowercase();
    language(&primary)
}

/// The text under `key` in `lang`, with each `%{name}` replaced by its value.
pub fn tr(lang: &str, key: &str, args: &[(&str, &str)]) -> String {
    let template = rust_i18n::t!(key, locale = language(lang));
    let mut text = template.into_owned();
    for (name, value) in args {
        text = text.replace(&format!("%{{{name}}}"), value);
    }
    text
}

/// A bot text without arguments.
pub fn bot(lang: &str, key: &str) -> String {
    tr(lang, &format!("bot.{key}"), &[])
}

/// A bot text with arguments.
pub fn bot_with(lang: &str, key: &str, args: &[(&str, &str)]) -> String {
    tr(lang, &format!("bot.{key}"), args)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn keys(prefix: &str, value: &serde_yaml::Value, out: &mut BTreeSet<String>) {
        match value {
            serde_yaml::Value::Mapping(map) => {
                for (k, v) in map {
                    let k = match k {
                        serde_yaml::Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    };
                    let path = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    keys(&path, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_owned());
            }
        }
    }

    fn locale_keys(lang: &str) -> BTreeSet<String> {
        let path = format!("{}/../locales/{lang}.yml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut out = BTreeSet::new();
        keys("", &yaml, &mut out);
        out
    }

    #[test]
    fn every_key_is_in_every_locale() {
        let all: Vec<(&str, BTreeSet<String>)> =
            LANGUAGES.iter().map(|l| (*l, locale_keys(l))).collect();
        for (lang, keys) in &all {
            for (other, other_keys) in &all {
                let missing: Vec<&String> = other_keys.difference(keys).collect();
                assert!(
                    missing.is_empty(),
                    "{lang}.yml lacks keys that {other}.yml has: {missing:?}"
                );
            }
        }
    }

    #[test]
    fn every_key_the_bots_use_exists() {
        let sources = ["engine.rs", "render.rs", "survey.rs"];
        let es = locale_keys("es");
        for file in sources {
            let path = format!("{}/src/{file}", env!("CARGO_MANIFEST_DIR"));
            let code = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // bot(lang, "key") and bot_with(lang, "key", ...) name their key second.
            for call in ["bot(", "bot_with("] {
                for (at, _) in code.match_indices(call) {
                    let rest = &code[at + call.len()..];
                    let Some(start) = rest.find('"') else {
                        continue;
                    };
                    // Only a literal second argument: `lang, "key"`.
                    let before = rest[..start].trim_end();
                    if !before.ends_with(',') || before.matches(',').count() != 1 {
                        continue;
                    }
                    let rest = &rest[start + 1..];
                    let Some(end) = rest.find('"') else { continue };
                    let key = format!("bot.{}", &rest[..end]);
                    assert!(es.contains(&key), "{file} uses {key}, which es.yml lacks");
                }
            }
        }
    }

    #[test]
    fn languages_and_arguments() {
        assert_eq!(from_hint(Some("en-GB")), "en");
        assert_eq!(from_hint(Some("pt-br")), "es");
        assert_eq!(from_hint(None), "es");
        assert_eq!(
            bot_with("en", "reply_added", &[("radicado", "PQRS-2026-000001")]),
            "We added your reply to PQRS-2026-000001. We are going on with your case."
        );
        assert!(bot("es", "menu").starts_with("¿Qué desea"));
        assert_eq!(bot("fr", "menu"), bot("es", "menu"));
    }
}
