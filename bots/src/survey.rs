//! Satisfaction surveys in the chat (PRO-008 §5.4, PRO-SIG-10). The invitation's message asks
//! the first question, with the page's link for whoever prefers it; each answer asks the next;
//! the last stores the whole set at once through `atiende_core::surveys` (taken via `chat`, the
//! same checks and low-score follow-up as the web page), in the transaction of the update that
//! gave it, so a replayed update stores nothing twice.
//!
//! Scores, yes/no and choices are buttons whose ids name the invitation, the question and the
//! answer (`srv:<invitation>:<position>:<answer>`); free text is typed, and an optional one may be
//! skipped. A button is taken only when it answers the question being asked of one of the chat's
//! customer's open invitations: another customer's invitation reads like none at all, an old
//! question's button repeats the question being asked, and a survey answered elsewhere or closed
//! says so. The answers so far live in the conversation only: leaving the survey (a command, the
//! menu) stores nothing, and the invitation stays open in its message and on the page. A PQRS
//! being filed is never lost to a survey button: the filing goes on first.

use std::collections::BTreeMap;

use atiende_core::contacts;
use atiende_core::surveys::{self, Answering, Refused, SurveyInvitation, SurveyQuestion, TakenVia};
use atiende_core::{Error, texts};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::engine::{Choice, Conversation, Engine, Incoming, Input, Media, Reply, Step};
use crate::texts::{bot, bot_with};

/// What the id of a survey button starts with.
pub const PREFIX: &str = "srv:";
const SKIP: &str = "skip";
const START: &str = "start";

fn button(invitation: Uuid, position: i16, answer: &str, label: String) -> Choice {
    // At most 4 + 36 + 1 + 2 + 1 + 4 bytes: well within Telegram's 64.
    Choice {
        id: format!("{PREFIX}{invitation}:{position}:{answer}"),
        label,
    }
}

/// A question as the chat asks it: its number, its label and how to answer, with its buttons.
pub fn question(lang: &str, invitation: Uuid, q: &SurveyQuestion, count: usize) -> Reply {
    let n = q.position.to_string();
    let asked = bot_with(
        lang,
        "survey_question",
        &[
            ("n", &n),
            ("count", &count.to_string()),
            ("question", q.label(lang)),
        ],
    );
    let (hint, choices) = match q.kind.as_str() {
        "scale" => (
            Some(bot(lang, "survey_scale_hint")),
            (1..=5)
                .map(|s| {
                    let label = bot(lang, &format!("survey_scale_{s}"));
                    button(invitation, q.position, &s.to_string(), label)
                })
                .collect(),
        ),
        "yes_no" => (
            None,
            vec![
                button(invitation, q.position, "yes", bot(lang, "survey_yes")),
                button(invitation, q.position, "no", bot(lang, "survey_no")),
            ],
        ),
        "choice" => (
            None,
            q.options
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let label = if lang == "en" { &o.en } else { &o.es };
                    button(invitation, q.position, &format!("o{i}"), label.clone())
                })
                .collect(),
        ),
        _ if q.required => (Some(bot(lang, "survey_text_hint")), Vec::new()),
        _ => (
            Some(bot(lang, "survey_text_optional_hint")),
            vec![button(invitation, q.position, SKIP, bot(lang, "skip"))],
        ),
    };
    let text = match hint {
        Some(h) => format!("{asked}\n{h}"),
        None => asked,
    };
    Reply {
        text,
        choices,
        ask_contact: false,
    }
}

/// A survey notice (invitation or reminder) in the chat: what it is, the page's link, and the first
/// question; a first question to be typed is asked once the customer taps to start.
pub fn notice(lang: &str, kind: &str, data: &serde_json::Value) -> Reply {
    let key = if kind == "survey_reminder" {
        "survey_reminder"
    } else {
        "survey_invitation"
    };
    let intro = bot_with(
        lang,
        key,
        &[
            ("link", &texts::data_text(data, "link")),
            ("expires_on", &texts::data_date(lang, data, "expires_on")),
        ],
    );
    let invitation = texts::data_text(data, "invitation_id").parse::<Uuid>().ok();
    let first = data
        .get("first_question")
        .and_then(|q| serde_json::from_value::<SurveyQuestion>(q.clone()).ok());
    let count = data
        .get("question_count")
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(1);
    match (invitation, first) {
        (Some(id), Some(q)) if q.kind != "text" => {
            let asked = question(lang, id, &q, count);
            Reply {
                text: format!("{intro}\n\n{}", asked.text),
                ..asked
            }
        }
        (Some(id), Some(q)) => Reply {
            text: intro,
            choices: vec![button(id, q.position, START, bot(lang, "survey_start"))],
            ask_contact: false,
        },
        _ => Reply::text(intro),
    }
}

/// A tapped survey button: `srv:` then these.
struct Tap {
    invitation: Uuid,
    position: i16,
    answer: String,
}

fn tap(rest: &str) -> Option<Tap> {
    let mut parts = rest.splitn(3, ':');
    Some(Tap {
        invitation: parts.next()?.parse().ok()?,
        position: parts.next()?.parse().ok()?,
        answer: parts.next()?.to_owned(),
    })
}

/// What a tapped or typed answer is in the web form's terms (`None`: it answers nothing;
/// `Some(None)`: an optional question skipped).
fn read_answer(q: &SurveyQuestion, given: &str, typed: bool) -> Option<Option<String>> {
    let given = given.trim();
    let lower = given.to_lowercase();
    match q.kind.as_str() {
        "scale" => given
            .parse::<i16>()
            .ok()
            .filter(|n| (1..=5).contains(n))
            .map(|n| Some(n.to_string())),
        "yes_no" => match lower.as_str() {
            "yes" | "sí" | "si" => Some(Some("yes".into())),
            "no" => Some(Some("no".into())),
            _ => None,
        },
        "choice" => {
            let index = if typed {
                // The option's number as listed, or its label.
                lower
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .or_else(|| {
                        q.options.iter().position(|o| {
                            o.es.to_lowercase() == lower || o.en.to_lowercase() == lower
                        })
                    })
            } else {
                lower
                    .strip_prefix('o')
                    .and_then(|i| i.parse::<usize>().ok())
            };
            index
                .and_then(|i| q.options.get(i))
                .map(|o| Some(o.value.clone()))
        }
        _ if !typed && given == SKIP && !q.required => Some(None),
        _ if typed => Some(Some(given.to_owned())),
        _ => None,
    }
}

/// Whether the conversation is in the middle of filing a PQRS, which a survey never interrupts.
fn filing(step: &Step) -> bool {
    matches!(
        step,
        Step::FileType
            | Step::FileSubject { .. }
            | Step::FileDescription { .. }
            | Step::FileAttachments { .. }
            | Step::FileConfirm { .. }
            | Step::OfferAdd { .. }
    )
}

impl<M: Media> Engine<'_, M> {
    /// The invitation, if it is this customer's; another's reads like none.
    async fn own_invitation(
        &self,
        conn: &mut PgConnection,
        chat: &contacts::Chat,
        id: Uuid,
    ) -> Result<Option<SurveyInvitation>, Error> {
        match surveys::invitation(conn, id).await {
            Ok(inv) if inv.customer_id == chat.customer_id => Ok(Some(inv)),
            Ok(_) | Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A survey that can no longer be answered: said once, and the conversation leaves it.
    fn closed(&self, conv: &mut Conversation, inv: &SurveyInvitation) -> Option<Vec<Reply>> {
        let key = if inv.answered_at.is_some() {
            "survey_answered"
        } else if inv.expires_at <= chrono::Utc::now() {
            "survey_expired"
        } else {
            return None;
        };
        if matches!(&conv.step, Step::Survey { invitation_id, .. } if *invitation_id == inv.id) {
            conv.step = Step::Menu;
        }
        Some(vec![Reply::text(bot(&conv.language, key))])
    }

    /// A survey button was tapped.
    pub(crate) async fn survey_tap(
        &self,
        conn: &mut PgConnection,
        conv: &mut Conversation,
        chat: &contacts::Chat,
        rest: &str,
    ) -> Result<Vec<Reply>, Error> {
        let l = conv.language.clone();
        if filing(&conv.step) {
            let mut replies = vec![Reply::text(bot(&l, "survey_after_filing"))];
            replies.extend(self.prompt(conv));
            return Ok(replies);
        }
        let Some(t) = tap(rest) else {
            return self.again(conv, "not_understood");
        };
        let Some(inv) = self.own_invitation(conn, chat, t.invitation).await? else {
            let mut replies = vec![Reply::text(bot(&l, "survey_unknown"))];
            if matches!(conv.step, Step::Survey { .. }) {
                replies.extend(self.prompt(conv));
            }
            return Ok(replies);
        };
        if let Some(replies) = self.closed(conv, &inv) {
            return Ok(replies);
        }
        let Some(first) = inv.questions.first().cloned() else {
            return Ok(Vec::new());
        };
        let count = inv.questions.len();
        let (asked, answers, other) = match &conv.step {
            Step::Survey {
                invitation_id,
                question,
                answers,
                ..
            } if *invitation_id == inv.id => (Some(question.clone()), answers.clone(), false),
            Step::Survey { .. } => (None, BTreeMap::new(), true),
            _ => (None, BTreeMap::new(), false),
        };
        let mut replies = Vec::new();
        let current = match asked {
            Some(q) if q.position == t.position && t.answer != START => q,
            Some(_) => {
                // An earlier question's button, or "start" again: the question being asked.
                replies.push(Reply::text(bot(&l, "survey_old_button")));
                replies.extend(self.prompt(conv));
                return Ok(replies);
            }
            None => {
                if other {
                    replies.push(Reply::text(bot(&l, "survey_switched")));
                }
                let begins = t.position == first.position && t.answer != START;
                if !begins {
                    if t.position != first.position {
                        replies.push(Reply::text(bot(&l, "survey_restart")));
                    }
                    conv.step = Step::Survey {
                        invitation_id: inv.id,
                        question: first,
                        count,
                        answers: BTreeMap::new(),
                    };
                    replies.extend(self.prompt(conv));
                    return Ok(replies);
                }
                first
            }
        };
        let Some(answer) = read_answer(&current, &t.answer, false) else {
            // Not an answer this question offers (a forged button).
            conv.step = Step::Survey {
                invitation_id: inv.id,
                question: current,
                count,
                answers,
            };
            return self.again(conv, "not_understood");
        };
        replies.extend(
            self.survey_next(conn, conv, &inv, &current, answers, answer)
                .await?,
        );
        Ok(replies)
    }

    /// Something other than a survey button while a survey question is asked: typed text
    /// answers it; a menu button leaves the survey for the menu.
    pub(crate) async fn survey_input(
        &self,
        conn: &mut PgConnection,
        conv: &mut Conversation,
        chat: &contacts::Chat,
        inc: &Incoming,
    ) -> Result<Vec<Reply>, Error> {
        let input = &inc.input;
        let Step::Survey {
            invitation_id,
            question,
            answers,
            ..
        } = conv.step.clone()
        else {
            return Ok(Vec::new());
        };
        let l = conv.language.clone();
        let text = match input {
            Input::Choice(id) if id.starts_with("menu:") => {
                conv.step = Step::Menu;
                let mut replies = vec![Reply::text(bot(&l, "survey_left"))];
                replies.extend(self.menu_input(conn, conv, chat, inc).await?);
                return Ok(replies);
            }
            Input::Text(t) => t.clone(),
            _ => return self.again(conv, "survey_use_buttons"),
        };
        let Some(inv) = self.own_invitation(conn, chat, invitation_id).await? else {
            conv.step = Step::Menu;
            return Ok(vec![Reply::text(bot(&l, "survey_unknown"))]);
        };
        if let Some(replies) = self.closed(conv, &inv) {
            return Ok(replies);
        }
        if question.kind == "text" {
            let text = match self.text_input(conv, input, surveys::answers::MAX_TEXT) {
                Ok(t) => t,
                Err(replies) => return Ok(replies),
            };
            return self
                .survey_next(conn, conv, &inv, &question, answers, Some(text))
                .await;
        }
        match read_answer(&question, &text, true) {
            Some(answer) => {
                self.survey_next(conn, conv, &inv, &question, answers, answer)
                    .await
            }
            None => self.again(conv, "survey_use_buttons"),
        }
    }

    /// Records the answer to `question` and asks the next one; after the last, stores the whole
    /// set in the update's transaction.
    async fn survey_next(
        &self,
        conn: &mut PgConnection,
        conv: &mut Conversation,
        inv: &SurveyInvitation,
        question: &SurveyQuestion,
        mut answers: BTreeMap<String, String>,
        answer: Option<String>,
    ) -> Result<Vec<Reply>, Error> {
        let l = conv.language.clone();
        if let Some(a) = answer {
            answers.insert(question.code.clone(), a);
        }
        let next = inv
            .questions
            .iter()
            .find(|q| q.position > question.position)
            .cloned();
        if let Some(next) = next {
            conv.step = Step::Survey {
                invitation_id: inv.id,
                question: next,
                count: inv.questions.len(),
                answers,
            };
            return Ok(self.prompt(conv));
        }
        conv.step = Step::Menu;
        let who = Answering {
            via: TakenVia::Chat,
            entered_by: None,
            low: self.low_score,
        };
        let key = match surveys::answer_in(conn, inv.id, &answers, false, who).await {
            Ok(_) => "survey_thanks",
            Err(Refused::Answered) => "survey_answered",
            Err(Refused::Expired) => "survey_expired",
            Err(Refused::Invalid(refusals)) => {
                // Each answer was read against its question as it came; a version that changed
                // underneath would be a bug, not the customer's doing.
                return Err(Error::Internal(format!(
                    "chat survey answers refused: {:?}",
                    refusals.iter().map(|r| r.code).collect::<Vec<_>>()
                )));
            }
            Err(Refused::Other(e)) => return Err(e),
        };
        Ok(vec![Reply::text(bot(&l, key))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atiende_core::surveys::answers::SurveyChoice;

    fn q(kind: &str, required: bool) -> SurveyQuestion {
        SurveyQuestion {
            position: 4,
            code: "expectations".into(),
            kind: kind.into(),
            label_es: "¿Cumplió?".into(),
            label_en: "Did it?".into(),
            options: (0..4)
                .map(|i| SurveyChoice {
                    value: format!("v{i}"),
                    es: format!("Opción {i}"),
                    en: format!("Option {i}"),
                })
                .collect(),
            required,
        }
    }

    #[test]
    fn buttons_fit_telegram_and_read_back() {
        let id = Uuid::new_v4();
        let reply = question("es", id, &q("choice", true), 6);
        assert_eq!(reply.choices.len(), 4);
        assert!(reply.choices.iter().all(|c| c.id.len() <= 64));
        assert!(reply.text.starts_with("Pregunta 4 de 6: ¿Cumplió?"));
        let t = tap(reply.choices[2].id.trim_start_matches(PREFIX)).expect("a tap");
        assert_eq!((t.invitation, t.position), (id, 4));
        assert_eq!(
            read_answer(&q("choice", true), &t.answer, false),
            Some(Some("v2".into()))
        );
        assert_eq!(read_answer(&q("choice", true), "o9", false), None);
        assert_eq!(
            read_answer(&q("choice", true), "Option 1", true),
            Some(Some("v1".into()))
        );
        assert_eq!(
            read_answer(&q("scale", true), "5", false),
            Some(Some("5".into()))
        );
        assert_eq!(read_answer(&q("scale", true), "6", true), None);
        assert_eq!(
            read_answer(&q("yes_no", true), "Sí", true),
            Some(Some("yes".into()))
        );
        assert_eq!(read_answer(&q("text", false), SKIP, false), Some(None));
        assert_eq!(read_answer(&q("text", true), SKIP, false), None);
        let optional = question("en", id, &q("text", false), 6);
        assert_eq!(
            optional.text,
            "Question 4 of 6: Did it?\nType your answer, or tap “Skip” if you have nothing to add."
        );
        assert_eq!(optional.choices.len(), 1);
        assert!(optional.choices[0].id.ends_with(":4:skip"));
    }
}
