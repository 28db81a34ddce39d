//! Surveys in a customer's sync documents (see [`crate::customer_documents`]). The inbox shows each
//! invitation with its questions (`surveys`, keyed by invitation id). The app answers by writing
//! `surveys.<invitation id>.answers` into the outbox (question code → a 1–5 number, `true`/`false`
//! or `"yes"`/`"no"`, an option's value, or text), and the inbox says what became of it
//! (`survey_answers`, keyed by invitation id), as it does for ratings. Answers are stored through
//! [`surveys::answer`], taken via the app: the same checks as the web page, once per invitation.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::customer_documents::{self, MAX_OUTBOX_ENTRIES, RatingOutcome, rejection};
use crate::doc_id::DocumentId;
use crate::error::{Error, Result};
use crate::surveys::{self, Answering, LowScore, Refused, SurveyQuestion, TakenVia};

/// One invitation as the customer's inbox shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InboxSurvey {
    pub template: String,
    pub name_es: String,
    pub name_en: String,
    pub version: i32,
    pub work_order_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    pub sent_at: DateTime<Utc>,
    /// After this the survey can no longer be answered.
    pub expires_at: DateTime<Utc>,
    /// `open` or `answered` (the app compares `expires_at` with its clock for `expired`).
    pub status: String,
    pub answered_at: Option<DateTime<Utc>>,
    pub taken_via: Option<String>,
    /// Frozen with the invitation's version: written once.
    pub questions: Vec<SurveyQuestion>,
}

/// Where an invitation goes in its customer's inbox and what it says there; `None` when the
/// customer has no inbox yet (it is filled when they first sync) or the invitation is gone.
pub async fn inbox_entry(
    pool: &PgPool,
    invitation_id: Uuid,
) -> Result<Option<(DocumentId, InboxSurvey)>> {
    let mut conn = pool.acquire().await?;
    let inv = match surveys::invitation(&mut conn, invitation_id).await {
        Ok(inv) => inv,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(docs) = customer_documents::find(&mut *conn, inv.customer_id).await? else {
        return Ok(None);
    };
    let status = if inv.answered_at.is_some() {
        "answered"
    } else {
        "open"
    };
    Ok(Some((
        docs.inbox,
        InboxSurvey {
            template: inv.template,
            name_es: inv.template_name_es,
            name_en: inv.template_name_en,
            version: inv.version,
            work_order_id: inv.work_order_id,
            campaign_id: inv.campaign_id,
            sent_at: inv.sent_at,
            expires_at: inv.expires_at,
            status: status.to_owned(),
            answered_at: inv.answered_at,
            taken_via: inv.taken_via,
            questions: inv.questions,
        },
    )))
}

fn refused(code: &str, reason: &str) -> RatingOutcome {
    RatingOutcome::Rejected {
        code: code.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The outbox's answers as the web form's fields: numbers as digits, booleans as `yes`/`no`,
/// `null` as unanswered. `None` when an answer is a map or a list.
fn raw_answers(answers: &serde_json::Map<String, Value>) -> Option<BTreeMap<String, String>> {
    let mut raw = BTreeMap::new();
    for (code, v) in answers {
        let text = match v {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(true) => "yes".to_owned(),
            Value::Bool(false) => "no".to_owned(),
            Value::Array(_) | Value::Object(_) => return None,
        };
        raw.insert(code.clone(), text);
    }
    Some(raw)
}

/// Stores the answers the outbox holds for invitations still open, and returns what the inbox
/// says of each. An invitation the app answered already is passed over (the outbox keeps its
/// answers after they are stored); one answered another way is refused. Another customer's
/// invitation reads exactly like one that does not exist.
pub async fn apply_answers(
    pool: &PgPool,
    customer_id: Uuid,
    content: &Value,
    low: &LowScore,
) -> Result<Vec<(Uuid, RatingOutcome)>> {
    let mut out = Vec::new();
    let Some(entries) = content.get("surveys").and_then(Value::as_object) else {
        return Ok(out);
    };
    for (key, value) in entries.iter().take(MAX_OUTBOX_ENTRIES) {
        let Ok(id) = Uuid::parse_str(key) else {
            continue;
        };
        let inv = {
            let mut conn = pool.acquire().await?;
            match surveys::invitation(&mut conn, id).await {
                Ok(inv) if inv.customer_id == customer_id => Some(inv),
                Ok(_) | Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            }
        };
        let Some(inv) = inv else {
            out.push((
                id,
                refused("survey_not_found", "survey invitation not found"),
            ));
            continue;
        };
        if inv.answered_at.is_some() && inv.taken_via.as_deref() == Some(TakenVia::App.as_str()) {
            continue;
        }
        let raw = value
            .get("answers")
            .and_then(Value::as_object)
            .and_then(raw_answers);
        let Some(raw) = raw else {
            out.push((
                id,
                refused(
                    "invalid_survey_answers",
                    "answers must map each question's code to a number, yes/no or text",
                ),
            ));
            continue;
        };
        let who = Answering {
            via: TakenVia::App,
            entered_by: None,
            low,
        };
        let outcome = match surveys::answer(pool, id, &raw, true, who).await {
            Ok(_) => RatingOutcome::Accepted,
            Err(Refused::Other(e)) => match rejection(&e) {
                Some((code, reason)) => RatingOutcome::Rejected { code, reason },
                None => return Err(e),
            },
            Err(r) => match rejection(&r.into_error()) {
                Some((code, reason)) => RatingOutcome::Rejected { code, reason },
                None => continue,
            },
        };
        out.push((id, outcome));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_values_read_like_the_web_forms() {
        let answers = serde_json::json!({"q": 4, "r": true, "s": "met", "t": null, "u": false});
        let raw = answers
            .as_object()
            .and_then(raw_answers)
            .unwrap_or_default();
        assert_eq!(raw.get("q").map(String::as_str), Some("4"));
        assert_eq!(raw.get("r").map(String::as_str), Some("yes"));
        assert_eq!(raw.get("u").map(String::as_str), Some("no"));
        assert!(!raw.contains_key("t"));
        let nested = serde_json::json!({"q": [4]});
        assert!(nested.as_object().and_then(raw_answers).is_none());
    }
}
