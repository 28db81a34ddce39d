//! What a customer (or staff for them) answers to a survey, parsed against the questions of the
//! invitation's version: every field is checked before anything is stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest free-text answer, in characters.
pub const MAX_TEXT: usize = 2_000;

/// One question of a template version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurveyQuestion {
    pub position: i16,
    /// The form field and the API's name of the question.
    pub code: String,
    /// `scale` (1 to 5), `yes_no`, `choice` (one of `options`) or `text`.
    pub kind: String,
    pub label_es: String,
    pub label_en: String,
    /// For `choice`.
    pub options: Vec<SurveyChoice>,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurveyChoice {
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^[\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*[a-z0-9][a-z0-9_]{0,39}[\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*$"
        )
    )]
    pub value: String,
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 80,
            pattern = "[^\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
        )
    )]
    pub es: String,
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 80,
            pattern = "[^\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
        )
    )]
    pub en: String,
}

impl SurveyQuestion {
    pub fn label(&self, language: &str) -> &str {
        if language == "en" {
            &self.label_en
        } else {
            &self.label_es
        }
    }
}

/// An answer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Score(i16),
    Yes(bool),
    SurveyChoice(String),
    Text(String),
}

/// A checked answer to the question at `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub position: i16,
    pub value: Value,
}

/// Why one question's answer was refused: the question's code and a stable error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub question: String,
    pub code: &'static str,
}

/// Checks `raw` (question code → what was typed or chosen, as text) against `questions`. A scale
/// is `1`–`5`; yes/no is `yes` or `no`; a choice one of its option values; a text at most
/// [`MAX_TEXT`] characters. Blank means unanswered, which only optional questions may be. Names
/// of no question are refused with the code `unknown_survey_question` when `strict` (the API);
/// the web form ignores its own extra fields.
pub fn parse(
    questions: &[SurveyQuestion],
    raw: &BTreeMap<String, String>,
    strict: bool,
) -> Result<Vec<Answer>, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let mut answers = Vec::new();
    if strict {
        for name in raw.keys() {
            if !questions.iter().any(|q| &q.code == name) {
                refusals.push(Refusal {
                    question: name.chars().take(40).collect(),
                    code: "unknown_survey_question",
                });
            }
        }
    }
    for q in questions {
        let given = raw.get(&q.code).map(|v| v.trim()).unwrap_or_default();
        let refuse = |code| Refusal {
            question: q.code.clone(),
            code,
        };
        if given.is_empty() {
            if q.required {
                refusals.push(refuse("survey_answer_required"));
            }
            continue;
        }
        let value = match q.kind.as_str() {
            "scale" => match given.parse::<i16>() {
                Ok(n @ 1..=5) => Ok(Value::Score(n)),
                _ => Err(refuse("invalid_survey_score")),
            },
            "yes_no" => match given {
                "yes" | "true" => Ok(Value::Yes(true)),
                "no" | "false" => Ok(Value::Yes(false)),
                _ => Err(refuse("invalid_survey_yes_no")),
            },
            "choice" => {
                if q.options.iter().any(|o| o.value == given) {
                    Ok(Value::SurveyChoice(given.to_owned()))
                } else {
                    Err(refuse("invalid_survey_choice"))
                }
            }
            _ => {
                if given.chars().count() > MAX_TEXT || given.contains('\0') {
                    Err(refuse("survey_text_too_long"))
                } else {
                    Ok(Value::Text(given.to_owned()))
                }
            }
        };
        match value {
            Ok(value) => answers.push(Answer {
                position: q.position,
                value,
            }),
            Err(r) => refusals.push(r),
        }
    }
    if refusals.is_empty() {
        Ok(answers)
    } else {
        Err(refusals)
    }
}

/// The lowest 1–5 score among `answers`, if any question was a scale.
pub fn lowest_score(answers: &[Answer]) -> Option<i16> {
    answers
        .iter()
        .filter_map(|a| match a.value {
            Value::Score(n) => Some(n),
            _ => None,
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(position: i16, code: &str, kind: &str, required: bool) -> SurveyQuestion {
        SurveyQuestion {
            position,
            code: code.into(),
            kind: kind.into(),
            label_es: code.into(),
            label_en: code.into(),
            options: if kind == "choice" {
                vec![SurveyChoice {
                    value: "met".into(),
                    es: "Sí".into(),
                    en: "Yes".into(),
                }]
            } else {
                Vec::new()
            },
            required,
        }
    }

    #[test]
    fn every_kind_is_checked() {
        let questions = [
            q(1, "quality", "scale", true),
            q(2, "recommend", "yes_no", true),
            q(3, "expectations", "choice", true),
            q(4, "comments", "text", false),
        ];
        let raw = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        let ok = parse(
            &questions,
            &raw(&[
                ("quality", " 4 "),
                ("recommend", "no"),
                ("expectations", "met"),
            ]),
            true,
        )
        .expect("valid");
        assert_eq!(ok.len(), 3);
        assert_eq!(lowest_score(&ok), Some(4));
        let bad = parse(
            &questions,
            &raw(&[
                ("quality", "6"),
                ("recommend", "maybe"),
                ("expectations", "other"),
                ("comments", &"x".repeat(MAX_TEXT + 1)),
                ("extra", "1"),
            ]),
            true,
        )
        .expect_err("invalid");
        let codes: Vec<_> = bad.iter().map(|r| r.code).collect();
        assert_eq!(
            codes,
            [
                "unknown_survey_question",
                "invalid_survey_score",
                "invalid_survey_yes_no",
                "invalid_survey_choice",
                "survey_text_too_long"
            ]
        );
        let missing = parse(&questions, &raw(&[]), false).expect_err("required");
        assert_eq!(missing.len(), 3);
    }
}
