//! The page's language: `?lang=es|en`, else the browser's `Accept-Language`, else Spanish.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Es,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Es => "es",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Es => Lang::En,
            Lang::En => Lang::Es,
        }
    }

    fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?;
        if primary.eq_ignore_ascii_case("es") {
            Some(Lang::Es)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The language the browser prefers most among ours (`q` weights honoured; a tie keeps the
    /// browser's order).
    pub fn from_accept_language(value: &str) -> Option<Lang> {
        let mut best: Option<(f32, Lang)> = None;
        for item in value.split(',') {
            let mut parts = item.split(';');
            let Some(lang) = parts.next().and_then(Lang::parse) else {
                continue;
            };
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }

    /// A text of `locales/web.yml` in this language.
    pub fn t(self, key: &str) -> String {
        let key = format!("web.{key}");
        rust_i18n::t!(&key, locale = self.code()).into_owned()
    }

    /// A text with its `%{name}` placeholders filled.
    pub fn t_with(self, key: &str, args: &[(&str, &str)]) -> String {
        let mut text = self.t(key);
        for (name, value) in args {
            text = text.replace(&format!("%{{{name}}}"), value);
        }
        text
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let asked = parts.uri.query().and_then(|q| {
            q.split('&')
                .filter_map(|kv| kv.strip_prefix("lang="))
                .find_map(Lang::parse)
        });
        let browser = || {
            parts
                .headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::from_accept_language)
        };
        Ok(asked.or_else(browser).unwrap_or(Lang::Es))
    }
}

#[cfg(test)]
mod tests {
    use super::Lang;

    #[test]
    fn accept_language_picks_the_preferred_of_ours() {
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,es;q=0.8"),
            Some(Lang::En)
        );
        assert_eq!(
            Lang::from_accept_language("fr, es-CO;q=0.7, en;q=0.5"),
            Some(Lang::Es)
        );
        assert_eq!(
            Lang::from_accept_language("en;q=0.2, es;q=0.9"),
            Some(Lang::Es)
        );
        assert_eq!(Lang::from_accept_language("de, fr"), None);
        assert_eq!(Lang::from_accept_language("en;q=0"), None);
    }

    #[test]
    fn texts_exist_in_both_languages() {
        for lang in [Lang::Es, Lang::En] {
            let title = lang.t("form.title");
            assert!(!title.starts_with("web."), "{title}");
        }
        assert_ne!(Lang::Es.t("form.title"), Lang::En.t("form.title"));
    }
}

#[cfg(test)]
mod merged_locales {
    use atiende_core::types::CaseType;

    /// `locales/web.yml` (version 2: both languages in one file) loads beside `es.yml` and
    /// `en.yml` (one language per file), here and in `core`, without hiding their keys.
    #[test]
    fn web_texts_merge_with_the_per_language_files() {
        assert_eq!(
            rust_i18n::t!("case_type.peticion", locale = "es"),
            "petición"
        );
        assert_eq!(
            rust_i18n::t!("web.nav.status", locale = "en"),
            "Check a status"
        );
        assert_eq!(
            atiende_core::texts::case_type("en", CaseType::DatosReclamo),
            rust_i18n::t!("case_type.datos_reclamo", locale = "en")
        );
        assert!(!rust_i18n::available_locales!().contains(&"web"));
    }
}
