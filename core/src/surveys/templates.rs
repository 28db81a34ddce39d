//! Template versions kept by staff: the quality director or an admin writes a new version's
//! questions, changes them while no invitation uses the version, and chooses which version new
//! invitations of the template use. Every question is checked before anything is written; once a
//! version has an invitation its questions are frozen (the database's `survey_questions_frozen`
//! trigger is the last word on that).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::answers::{SurveyChoice, SurveyQuestion};
use super::{SurveyTemplate, questions};
use crate::auth::User;
use crate::error::{Error, Result, violates};
use crate::input::{SurveyLabel, SurveyOptionLabel, Text};
use crate::types::Role;

/// Most questions a version has.
pub const MAX_QUESTIONS: usize = 20;
/// Fewest and most options of a `choice` question.
pub const MIN_OPTIONS: usize = 2;
pub const MAX_OPTIONS: usize = 10;

/// What a question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SurveyQuestionKind {
    /// A score from 1 to 5.
    Scale,
    YesNo,
    /// One of the question's options.
    Choice,
    /// Free text, at most 2,000 characters.
    Text,
}

impl SurveyQuestionKind {
    fn as_str(self) -> &'static str {
        match self {
            SurveyQuestionKind::Scale => "scale",
            SurveyQuestionKind::YesNo => "yes_no",
            SurveyQuestionKind::Choice => "choice",
            SurveyQuestionKind::Text => "text",
        }
    }
}

/// A question as staff write it.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SurveyQuestionDraft {
    /// The form field and the API's name of the question: a lower-case letter, then 1 to 39
    /// lower-case letters, digits or `_`; unique in the version.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^[\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*[a-z][a-z0-9_]{1,39}[\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*$"
        )
    )]
    pub code: String,
    pub kind: SurveyQuestionKind,
    /// 1 to 300 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 300,
            pattern = "[^\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
        )
    )]
    pub label_es: String,
    /// 1 to 300 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 300,
            pattern = "[^\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
        )
    )]
    pub label_en: String,
    /// For `choice` only, and then 2 to 10: `value` (a lower-case letter or digit, then up to 39
    /// lower-case letters, digits or `_`; unique in the question), `es` and `en` (1 to 80
    /// characters each).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 10))]
    pub options: Vec<SurveyChoice>,
    /// Whether it must be answered; true when left out.
    #[serde(default = "answer_required")]
    pub required: bool,
}

fn answer_required() -> bool {
    true
}

fn is_code(s: &str, first: impl Fn(u8) -> bool, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len())
        && s.bytes().next().is_some_and(first)
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The questions of a version, checked: 1 to [`MAX_QUESTIONS`], codes well formed and unique,
/// wording in both languages within its bound, options only on choices and then
/// [`MIN_OPTIONS`]–[`MAX_OPTIONS`] of them with unique values. The first rule broken is the error.
pub fn parse_questions(drafts: &[SurveyQuestionDraft]) -> Result<Vec<SurveyQuestion>> {
    if drafts.is_empty() || drafts.len() > MAX_QUESTIONS {
        return Err(Error::invalid(
            "invalid_survey_question_count",
            format!("a version has 1 to {MAX_QUESTIONS} questions"),
        ));
    }
    let mut out: Vec<SurveyQuestion> = Vec::with_capacity(drafts.len());
    for (i, d) in drafts.iter().enumerate() {
        let code = d.code.trim();
        if !is_code(code, |b| b.is_ascii_lowercase(), 2..=40) {
            return Err(Error::invalid(
                "invalid_survey_question_code",
                "a question's code is a lower-case letter then 1 to 39 lower-case letters, digits or _",
            ));
        }
        if out.iter().any(|q| q.code == code) {
            return Err(Error::invalid(
                "duplicate_survey_question",
                format!("two questions have the code {code}"),
            ));
        }
        let is_choice = d.kind == SurveyQuestionKind::Choice;
        if is_choice && !(MIN_OPTIONS..=MAX_OPTIONS).contains(&d.options.len()) {
            return Err(Error::invalid(
                "invalid_survey_options",
                format!("a choice has {MIN_OPTIONS} to {MAX_OPTIONS} options"),
            ));
        }
        if !is_choice && !d.options.is_empty() {
            return Err(Error::invalid(
                "invalid_survey_options",
                "only a choice has options",
            ));
        }
        let mut options: Vec<SurveyChoice> = Vec::with_capacity(d.options.len());
        for o in &d.options {
            let value = o.value.trim();
            if !is_code(
                value,
                |b| b.is_ascii_lowercase() || b.is_ascii_digit(),
                1..=40,
            ) {
                return Err(Error::invalid(
                    "invalid_survey_option",
                    "an option's value is 1 to 40 lower-case letters, digits or _",
                ));
            }
            if options.iter().any(|p| p.value == value) {
                return Err(Error::invalid(
                    "duplicate_survey_option",
                    format!("two options of {code} have the value {value}"),
                ));
            }
            options.push(SurveyChoice {
                value: value.to_owned(),
                es: Text::<SurveyOptionLabel>::parse(&o.es)?.into_string(),
                en: Text::<SurveyOptionLabel>::parse(&o.en)?.into_string(),
            });
        }
        out.push(SurveyQuestion {
            position: i16::try_from(i + 1).unwrap_or(i16::MAX),
            code: code.to_owned(),
            kind: d.kind.as_str().to_owned(),
            label_es: Text::<SurveyLabel>::parse(&d.label_es)?.into_string(),
            label_en: Text::<SurveyLabel>::parse(&d.label_en)?.into_string(),
            options,
            required: d.required,
        });
    }
    Ok(out)
}

pub(super) fn template_not_found() -> Error {
    Error::not_found("survey_template_not_found", "survey template")
}

pub(super) fn version_not_found() -> Error {
    Error::not_found("survey_version_not_found", "survey template version")
}

/// Only the quality director and admins keep templates and campaigns.
pub(crate) fn require_survey_manager(actor: &User) -> Result<()> {
    if matches!(actor.role, Role::QualityDirector | Role::Admin) {
        Ok(())
    } else {
        Err(Error::forbidden(
            "role_not_allowed",
            "only the quality director or an admin keeps survey templates and campaigns",
        ))
    }
}

/// One version of a template, its questions, and whether it can still change.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurveyTemplateVersion {
    pub template: String,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    /// Whether new invitations of the template use this version.
    pub current: bool,
    /// How many invitations use it.
    pub invitations: i64,
    /// True once an invitation uses it: its questions no longer change.
    pub frozen: bool,
    pub questions: Vec<SurveyQuestion>,
}

async fn template_exists(db: impl PgExecutor<'_>, code: &str) -> Result<()> {
    sqlx::query_scalar!("select code from survey_templates where code = $1", code)
        .fetch_optional(db)
        .await?
        .map(|_| ())
        .ok_or_else(template_not_found)
}

/// Every version of the template `code`, newest first.
pub async fn versions(conn: &mut PgConnection, code: &str) -> Result<Vec<SurveyTemplateVersion>> {
    template_exists(&mut *conn, code).await?;
    let rows = sqlx::query!(
        r#"select v.id, v.version, v.created_at, t.current_version_id is not distinct from v.id as "current!",
                  (select count(*) from survey_invitations i where i.version_id = v.id) as "invitations!"
           from survey_template_versions v join survey_templates t on t.code = v.template_code
           where v.template_code = $1
           order by v.version desc"#,
        code
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(SurveyTemplateVersion {
            template: code.to_owned(),
            version: r.version,
            created_at: r.created_at,
            current: r.current,
            invitations: r.invitations,
            frozen: r.invitations > 0,
            questions: questions(&mut *conn, r.id).await?,
        });
    }
    Ok(out)
}

async fn version(
    conn: &mut PgConnection,
    code: &str,
    number: i32,
) -> Result<SurveyTemplateVersion> {
    versions(conn, code)
        .await?
        .into_iter()
        .find(|v| v.version == number)
        .ok_or_else(version_not_found)
}

async fn write_questions(
    conn: &mut PgConnection,
    version_id: Uuid,
    questions: &[SurveyQuestion],
) -> Result<()> {
    for q in questions {
        let options = (q.kind == "choice")
            .then(|| serde_json::to_value(&q.options))
            .transpose()
            .map_err(|e| Error::Internal(format!("survey options: {e}")))?;
        sqlx::query!(
            "insert into survey_questions (version_id, position, code, kind, label_es, label_en, options, required)
             values ($1, $2, $3, $4, $5, $6, $7, $8)",
            version_id,
            q.position,
            q.code,
            q.kind,
            q.label_es,
            q.label_en,
            options,
            q.required,
        )
        .execute(&mut *conn)
        .await
        .map_err(frozen)?;
    }
    Ok(())
}

fn frozen_error() -> Error {
    Error::conflict(
        "survey_version_frozen",
        "invitations use this version: its questions no longer change; make a new version",
    )
}

fn frozen(e: sqlx::Error) -> Error {
    if violates(&e, "survey_questions_frozen") {
        frozen_error()
    } else {
        e.into()
    }
}

/// Writes the next version of the template `code` with `drafts`' questions. It is not current
/// until staff choose it. Call in a transaction.
pub async fn create_version(
    conn: &mut PgConnection,
    actor: &User,
    code: &str,
    drafts: &[SurveyQuestionDraft],
) -> Result<SurveyTemplateVersion> {
    require_survey_manager(actor)?;
    let questions = parse_questions(drafts)?;
    // The template's row serialises the numbering of its versions.
    sqlx::query_scalar!(
        "select code from survey_templates where code = $1 for update",
        code
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(template_not_found)?;
    let number = sqlx::query_scalar!(
        r#"insert into survey_template_versions (id, template_code, version)
           select $1, $2, coalesce(max(version), 0) + 1 from survey_template_versions
           where template_code = $2
           returning version"#,
        Uuid::new_v4(),
        code,
    )
    .fetch_one(&mut *conn)
    .await?;
    let id = version_id(&mut *conn, code, number).await?;
    write_questions(conn, id, &questions).await?;
    version(conn, code, number).await
}

async fn version_id(db: impl PgExecutor<'_>, code: &str, number: i32) -> Result<Uuid> {
    sqlx::query_scalar!(
        "select id from survey_template_versions where template_code = $1 and version = $2",
        code,
        number
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(version_not_found)
}

/// Replaces the questions of a version no invitation uses yet; a frozen one is a 409
/// `survey_version_frozen`. Call in a transaction: the version's row is locked against the
/// invitations that would freeze it meanwhile (they lock it to share).
pub async fn edit_version(
    conn: &mut PgConnection,
    actor: &User,
    code: &str,
    number: i32,
    drafts: &[SurveyQuestionDraft],
) -> Result<SurveyTemplateVersion> {
    require_survey_manager(actor)?;
    let questions = parse_questions(drafts)?;
    template_exists(&mut *conn, code).await?;
    let id = sqlx::query_scalar!(
        "select id from survey_template_versions where template_code = $1 and version = $2 for update",
        code,
        number
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(version_not_found)?;
    let used = sqlx::query_scalar!(
        r#"select exists (select 1 from survey_invitations where version_id = $1) as "used!""#,
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    if used {
        return Err(frozen_error());
    }
    sqlx::query!("delete from survey_questions where version_id = $1", id)
        .execute(&mut *conn)
        .await
        .map_err(frozen)?;
    write_questions(conn, id, &questions).await?;
    version(conn, code, number).await
}

/// Makes version `number` the one new invitations of the template `code` use.
pub async fn set_current(
    conn: &mut PgConnection,
    actor: &User,
    code: &str,
    number: i32,
) -> Result<SurveyTemplate> {
    require_survey_manager(actor)?;
    template_exists(&mut *conn, code).await?;
    let id = version_id(&mut *conn, code, number).await?;
    sqlx::query!(
        "update survey_templates set current_version_id = $2 where code = $1",
        code,
        id
    )
    .execute(&mut *conn)
    .await?;
    super::templates(conn)
        .await?
        .into_iter()
        .find(|t| t.code == code)
        .ok_or_else(template_not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(code: &str, kind: SurveyQuestionKind, options: usize) -> SurveyQuestionDraft {
        SurveyQuestionDraft {
            code: code.into(),
            kind,
            label_es: "¿Qué tal?".into(),
            label_en: "How was it?".into(),
            options: (0..options)
                .map(|i| SurveyChoice {
                    value: format!("o{i}"),
                    es: "Sí".into(),
                    en: "Yes".into(),
                })
                .collect(),
            required: true,
        }
    }

    fn code_of(drafts: &[SurveyQuestionDraft]) -> &'static str {
        match parse_questions(drafts) {
            Err(Error::Invalid { code, .. }) => code,
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn every_rule_of_a_version_is_checked() {
        use SurveyQuestionKind::*;
        let ok = parse_questions(&[draft("quality", Scale, 0), draft("which", Choice, 2)])
            .expect("valid");
        assert_eq!(ok[1].position, 2);
        assert_eq!(ok[1].kind, "choice");
        assert_eq!(code_of(&[]), "invalid_survey_question_count");
        let many: Vec<_> = (0..=MAX_QUESTIONS)
            .map(|i| draft(&format!("q{i}"), Text, 0))
            .collect();
        assert_eq!(code_of(&many), "invalid_survey_question_count");
        assert_eq!(
            code_of(&[draft("Q1", Scale, 0)]),
            "invalid_survey_question_code"
        );
        assert_eq!(
            code_of(&[draft(&"q".repeat(41), Scale, 0)]),
            "invalid_survey_question_code"
        );
        assert_eq!(
            code_of(&[draft("same", Scale, 0), draft("same", YesNo, 0)]),
            "duplicate_survey_question"
        );
        assert_eq!(
            code_of(&[draft("which", Choice, 1)]),
            "invalid_survey_options"
        );
        assert_eq!(
            code_of(&[draft("which", Choice, MAX_OPTIONS + 1)]),
            "invalid_survey_options"
        );
        assert_eq!(
            code_of(&[draft("score", Scale, 2)]),
            "invalid_survey_options"
        );
        let mut long = draft("quality", Scale, 0);
        long.label_en = "x".repeat(301);
        assert_eq!(code_of(&[long]), "invalid_survey_label");
        let mut dup = draft("which", Choice, 2);
        dup.options[1].value = "o0".into();
        assert_eq!(code_of(&[dup]), "duplicate_survey_option");
        let mut bad = draft("which", Choice, 2);
        bad.options[0].es = "x".repeat(81);
        assert_eq!(code_of(&[bad]), "invalid_survey_option");
    }
}
