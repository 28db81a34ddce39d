//! Surveys asked in the chat, end to end: wiremock plays Telegram and WhatsApp, a completed
//! visit's invitation reaches the customer's chat with its first question, and the customer taps
//! (or types) through it; the answers are stored once through the same core path as the web page,
//! taken via the chat, and a low score opens the follow-up. Old and forged buttons, another
//! customer's invitation, a survey answered on the page or closed, a replayed update and a PQRS
//! started mid-survey are each checked as the customer sees them.

use atiende_tests::{Org, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::app_users::{Page, open};
use crate::survey_app::{follow_up, invited, stored};
use crate::telegram::{Chat, SECRET, buttons, text};
use crate::web::post_form;
use crate::whatsapp::{Wa, choices};

/// The customer a chat was registered as.
async fn customer_of(app: &TestApp, channel: &str, chat: &str) -> Uuid {
    sqlx::query_scalar(
        "select customer_id from customer_chats where channel = $1 and external_id = $2",
    )
    .bind(channel)
    .bind(chat)
    .fetch_one(&app.pool)
    .await
    .expect("the chat's customer")
}

fn ids(invitation: Uuid, position: i16, answers: &[&str]) -> Vec<String> {
    answers
        .iter()
        .map(|a| format!("srv:{invitation}:{position}:{a}"))
        .collect()
}

/// The path of the survey page's link in a message (`/s/<token>?lang=es`).
fn link_path(message: &str) -> String {
    let start = message.find("/s/srv_").expect("the page's link");
    message[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ')')
        .collect()
}

async fn comment_of(app: &TestApp, invitation: Uuid) -> Option<String> {
    sqlx::query_scalar("select text from survey_answers where invitation_id = $1 and position = 5")
        .bind(invitation)
        .fetch_optional(&app.pool)
        .await
        .expect("the comment")
}

/// A Telegram text message update with a fixed update id, to be delivered twice.
fn typed(update_id: u64, chat: i64, text: &str) -> Value {
    json!({"update_id": update_id, "message": {
        "message_id": 77, "date": 1_764_000_000,
        "chat": {"id": chat, "type": "private", "first_name": "Ana"},
        "from": {"id": chat, "is_bot": false, "first_name": "Ana", "language_code": "es"},
        "text": text,
    }})
}

/// A customer registered in Telegram chat `c`, invited after a visit: the customer, the
/// invitation and the message that brought it.
async fn invited_in_telegram(
    chat: &Chat,
    org: &Org,
    c: i64,
    document: &str,
) -> (Uuid, Uuid, Value) {
    chat.register(c, document).await;
    let customer = customer_of(&chat.app, "telegram", &c.to_string()).await;
    let before = chat.sent(c).await.len();
    let invitation = invited(&chat.app, org, customer).await;
    let notice = chat.wait_for(c, before + 1).await[before].clone();
    (customer, invitation, notice)
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_telegram_customer_taps_through_the_survey_and_a_low_score_opens_the_follow_up(
    pool: PgPool,
) {
    let chat = Chat::start(pool).await;
    let org = chat.app.org().await;
    let c = 5151;
    // The invitation arrives with the page's link and the first question as buttons.
    let (_, invitation, asked) = invited_in_telegram(&chat, &org, c, "1020304050").await;
    assert!(text(&asked).contains("/s/srv_"), "{asked:#}");
    assert!(
        text(&asked).contains(
            "Pregunta 1 de 5: ¿Cómo califica la calidad del servicio prestado?\nElija de 1 (muy malo) a 5 (excelente)."
        ),
        "{asked:#}"
    );
    assert_eq!(
        buttons(&asked),
        ids(invitation, 1, &["1", "2", "3", "4", "5"])
    );

    let q2 = chat.tap(c, &format!("srv:{invitation}:1:2"), 1).await;
    assert!(
        text(&q2[0]).starts_with("Pregunta 2 de 5: ¿Cómo califica la puntualidad"),
        "{q2:#?}"
    );
    assert_eq!(
        buttons(&q2[0]),
        ids(invitation, 2, &["1", "2", "3", "4", "5"])
    );

    // A second tap on the first question's buttons: the question being asked again.
    let old = chat.tap(c, &format!("srv:{invitation}:1:5"), 2).await;
    assert_eq!(
        text(&old[0]),
        "Ese botón es de una pregunta anterior. Sigamos con esta:"
    );
    assert_eq!(
        buttons(&old[1]),
        ids(invitation, 2, &["1", "2", "3", "4", "5"])
    );
    // A forged answer the question does not offer.
    let forged = chat.tap(c, &format!("srv:{invitation}:2:9"), 2).await;
    assert_eq!(
        text(&forged[0]),
        "No entendí su respuesta. Por favor use los botones."
    );
    assert!(text(&forged[1]).starts_with("Pregunta 2 de 5"));

    chat.tap(c, &format!("srv:{invitation}:2:4"), 1).await;
    let q4 = chat.tap(c, &format!("srv:{invitation}:3:5"), 1).await;
    assert!(
        text(&q4[0]).starts_with("Pregunta 4 de 5: ¿Recomendaría nuestros servicios?"),
        "{q4:#?}"
    );
    assert_eq!(buttons(&q4[0]), ids(invitation, 4, &["yes", "no"]));
    // Typed instead of tapped.
    let q5 = chat.say(c, "Sí", 1).await;
    assert!(
        text(&q5[0]).starts_with("Pregunta 5 de 5: Comentarios o sugerencias"),
        "{q5:#?}"
    );
    assert_eq!(buttons(&q5[0]), ids(invitation, 5, &["skip"]));
    assert_eq!(stored(&chat.app, invitation).await, (0, None));
    // A comment over the bound is refused and asked again.
    let long = "x".repeat(atiende_core::surveys::answers::MAX_TEXT + 1);
    let too_long = chat.say(c, &long, 2).await;
    assert_eq!(
        text(&too_long[0]),
        "Ese texto es demasiado largo: el máximo es 2000 caracteres."
    );
    assert!(text(&too_long[1]).starts_with("Pregunta 5 de 5"));

    // The last answer, delivered twice by Telegram: one thank-you, one answer set.
    let update = typed(900_001, c, "Muy amables");
    let before = chat.sent(c).await.len();
    assert_eq!(
        chat.post_update(&update, Some(SECRET)).await,
        StatusCode::OK
    );
    assert_eq!(
        chat.post_update(&update, Some(SECRET)).await,
        StatusCode::OK
    );
    let thanks = chat.wait_for(c, before + 1).await;
    assert_eq!(
        text(&thanks[before]),
        "¡Gracias por responder la encuesta! Sus respuestas nos ayudan a mejorar."
    );
    chat.settled().await;
    assert_eq!(chat.sent(c).await.len(), before + 1);
    assert_eq!(
        stored(&chat.app, invitation).await,
        (5, Some("chat".into()))
    );
    assert_eq!(
        comment_of(&chat.app, invitation).await.as_deref(),
        Some("Muy amables")
    );
    assert_eq!(follow_up(&chat.app, invitation).await, Some(2));
    let yes: Option<bool> = sqlx::query_scalar(
        "select yes from survey_answers where invitation_id = $1 and position = 4",
    )
    .bind(invitation)
    .fetch_one(&chat.app.pool)
    .await
    .expect("the yes/no answer");
    assert_eq!(yes, Some(true));

    // A late tap on the answered survey stores nothing more.
    let late = chat.tap(c, &format!("srv:{invitation}:5:skip"), 1).await;
    assert!(
        text(&late[0]).starts_with("Esta encuesta ya fue respondida"),
        "{late:#?}"
    );
    assert_eq!(
        stored(&chat.app, invitation).await,
        (5, Some("chat".into()))
    );

    // Another customer's chat tapping (or forging) this invitation's buttons gets nothing.
    let other = 6262;
    let (_, own_invitation, _) = invited_in_telegram(&chat, &org, other, "9080706050").await;
    let foreign = chat.tap(other, &format!("srv:{invitation}:1:5"), 1).await;
    assert_eq!(text(&foreign[0]), "No encontramos esa encuesta.");
    let junk = chat.tap(other, "srv:not-a-uuid:1:5", 2).await;
    assert_eq!(
        text(&junk[0]),
        "No entendí su respuesta. Por favor use los botones."
    );
    assert_eq!(
        stored(&chat.app, invitation).await,
        (5, Some("chat".into()))
    );
    assert_eq!(stored(&chat.app, own_invitation).await, (0, None));
    chat.app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_pqrs_wins_over_the_survey_and_a_survey_answered_on_the_page_or_closed_says_so(
    pool: PgPool,
) {
    let chat = Chat::start(pool).await;
    let org = chat.app.org().await;
    let c = 7373;
    let (customer, invitation, notice) = invited_in_telegram(&chat, &org, c, "1020304050").await;

    // A survey button while a PQRS is being filed: the PQRS goes on, the survey waits.
    chat.tap(c, "menu:file", 1).await;
    let wait = chat.tap(c, &format!("srv:{invitation}:1:4"), 2).await;
    assert_eq!(
        text(&wait[0]),
        "Primero terminemos su PQRS (o escriba /cancel); la encuesta le espera en su mensaje."
    );
    assert_eq!(text(&wait[1]), "¿Qué tipo de solicitud es?");
    chat.tap(c, "type:queja", 1).await;
    chat.say(c, "Olor después de la fumigación", 1).await;
    chat.say(c, "La casa quedó con olor fuerte dos días.", 1)
        .await;
    chat.tap(c, "done", 1).await;
    let ack = chat.tap(c, "send", 1).await;
    assert!(text(&ack[0]).contains("PQRS-"), "{ack:#?}");

    // Started, then left for the menu mid-way: nothing stored, the invitation stays open.
    chat.tap(c, &format!("srv:{invitation}:1:4"), 1).await;
    let left = chat.say(c, "/menu", 2).await;
    assert!(
        text(&left[0]).starts_with("Dejamos la encuesta sin guardar."),
        "{left:#?}"
    );
    assert_eq!(text(&left[1]), "¿Qué desea hacer?");
    assert_eq!(stored(&chat.app, invitation).await, (0, None));
    // A later question's button after leaving starts over from the first question.
    let again = chat.tap(c, &format!("srv:{invitation}:2:4"), 2).await;
    assert_eq!(
        text(&again[0]),
        "Empecemos la encuesta desde la primera pregunta."
    );
    assert_eq!(
        buttons(&again[1]),
        ids(invitation, 1, &["1", "2", "3", "4", "5"])
    );
    chat.tap(c, &format!("srv:{invitation}:1:5"), 1).await;
    // A menu button from an earlier message leaves the survey for what it offers.
    let filing = chat.tap(c, "menu:file", 2).await;
    assert!(text(&filing[0]).starts_with("Dejamos la encuesta sin guardar."));
    assert_eq!(text(&filing[1]), "¿Qué tipo de solicitud es?");
    chat.say(c, "/cancel", 2).await;

    // Answered on the page meanwhile (with the link the chat message carried).
    chat.tap(c, &format!("srv:{invitation}:1:5"), 1).await;
    let path = link_path(text(&notice));
    let Page {
        status,
        cookie,
        csrf,
        html,
    } = open(&chat.app, &path).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let r = post_form(
        &chat.app,
        &path,
        &cookie,
        &[
            ("csrf", csrf.as_str()),
            ("service_quality", "4"),
            ("punctuality", "4"),
            ("technician_attention", "4"),
            ("would_recommend", "yes"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let late = chat.tap(c, &format!("srv:{invitation}:2:5"), 1).await;
    assert_eq!(
        text(&late[0]),
        "Esta encuesta ya fue respondida (por aquí, en la página o con nuestro personal), así que no guardamos nada más. ¡Gracias!"
    );
    assert_eq!(stored(&chat.app, invitation).await, (4, Some("web".into())));
    // The conversation left the survey: typed text is not taken as an answer.
    let offer = chat.say(c, "hola", 1).await;
    assert!(
        text(&offer[0]).starts_with("Tiene abierto el radicado"),
        "{offer:#?}"
    );
    chat.say(c, "/cancel", 2).await;
    assert_eq!(stored(&chat.app, invitation).await, (4, Some("web".into())));

    // A closed survey.
    let before = chat.sent(c).await.len();
    let closed = invited(&chat.app, &org, customer).await;
    chat.wait_for(c, before + 1).await;
    sqlx::query(
        "update survey_invitations set sent_at = now() - interval '20 days', expires_at = now() - interval '1 day' where id = $1",
    )
    .bind(closed)
    .execute(&chat.app.pool)
    .await
    .expect("expire");
    let expired = chat.tap(c, &format!("srv:{closed}:1:3"), 1).await;
    assert_eq!(
        text(&expired[0]),
        "Esta encuesta ya cerró y no se puede responder. ¡Gracias de todos modos!"
    );
    assert_eq!(stored(&chat.app, closed).await, (0, None));

    // Another invitation's first question mid-survey: that one begins, the other is left.
    let before = chat.sent(c).await.len();
    let (left_open, taken_up) = (
        invited(&chat.app, &org, customer).await,
        invited(&chat.app, &org, customer).await,
    );
    chat.wait_for(c, before + 2).await;
    chat.tap(c, &format!("srv:{left_open}:1:4"), 1).await;
    let switched = chat.tap(c, &format!("srv:{taken_up}:1:4"), 2).await;
    assert_eq!(
        text(&switched[0]),
        "Dejamos la otra encuesta sin responder; puede retomarla desde su mensaje mientras siga abierta."
    );
    assert_eq!(
        buttons(&switched[1]),
        ids(taken_up, 2, &["1", "2", "3", "4", "5"])
    );
    assert_eq!(stored(&chat.app, left_open).await, (0, None));
    chat.app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn on_whatsapp_scales_and_long_choices_are_lists_yes_no_are_buttons_and_a_comment_is_skipped(
    pool: PgPool,
) {
    let wa = Wa::start(pool).await;
    let org = wa.app.org().await;
    let from = "573001112233";
    wa.register(from, "1020304050").await;
    let customer = customer_of(&wa.app, "whatsapp", "+573001112233").await;

    let before = wa.sent(from).await.len();
    let invitation = invited(&wa.app, &org, customer).await;
    let asked = wa.wait_for(from, before + 1).await[before].clone();
    assert_eq!(asked["interactive"]["type"], "list", "{asked:#}");
    assert!(
        crate::whatsapp::text(&asked).contains("Pregunta 1 de 5"),
        "{asked:#}"
    );
    assert_eq!(
        choices(&asked),
        ids(invitation, 1, &["1", "2", "3", "4", "5"])
    );
    let rows = asked["interactive"]["action"]["sections"][0]["rows"].clone();
    assert_eq!(rows[4]["title"], "5 · Excelente");

    wa.pick(from, &format!("srv:{invitation}:1:5"), 1).await;
    wa.pick(from, &format!("srv:{invitation}:2:4"), 1).await;
    let q4 = wa.pick(from, &format!("srv:{invitation}:3:1"), 1).await;
    assert_eq!(q4[0]["interactive"]["type"], "button", "{q4:#?}");
    assert_eq!(choices(&q4[0]), ids(invitation, 4, &["yes", "no"]));
    let q5 = wa.tap(from, &format!("srv:{invitation}:4:no"), 1).await;
    assert_eq!(q5[0]["interactive"]["type"], "button");
    assert_eq!(choices(&q5[0]), ids(invitation, 5, &["skip"]));
    let thanks = wa.tap(from, &format!("srv:{invitation}:5:skip"), 1).await;
    assert_eq!(
        crate::whatsapp::text(&thanks[0]),
        "¡Gracias por responder la encuesta! Sus respuestas nos ayudan a mejorar."
    );
    assert_eq!(stored(&wa.app, invitation).await, (4, Some("chat".into())));
    assert_eq!(comment_of(&wa.app, invitation).await, None);
    assert_eq!(follow_up(&wa.app, invitation).await, Some(1));

    // The semestral survey (as a campaign invites it): its four-way choice is a list.
    let (campaign, semestral) = (Uuid::new_v4(), Uuid::new_v4());
    let version: Uuid = "5e1f0000-0000-4000-8000-000000000002"
        .parse()
        .expect("uuid");
    let before = wa.sent(from).await.len();
    let mut tx = wa.app.pool.begin().await.expect("tx");
    sqlx::query(
        "insert into survey_campaigns (id, version_id, name, closes_at)
         values ($1, $2, 'Diciembre', now() + interval '30 days')",
    )
    .bind(campaign)
    .bind(version)
    .execute(&mut *tx)
    .await
    .expect("campaign");
    sqlx::query(
        "insert into survey_invitations (id, customer_id, version_id, campaign_id, expires_at)
         values ($1, $2, $3, $4, now() + interval '15 days')",
    )
    .bind(semestral)
    .bind(customer)
    .bind(version)
    .bind(campaign)
    .execute(&mut *tx)
    .await
    .expect("invitation");
    sqlx::query(
        "insert into notifications (dedupe_key, customer_id, kind, urgency, ttl_secs, data)
         values ('survey_invitation:' || $1, $2, 'survey_invitation', 'normal', 3600,
                 jsonb_build_object('invitation_id', $1::uuid, 'page', 'http://127.0.0.1:8080/s/',
                                    'expires_on', '2026-12-20'))",
    )
    .bind(semestral)
    .bind(customer)
    .execute(&mut *tx)
    .await
    .expect("notification");
    tx.commit().await.expect("commit");
    let asked = wa.wait_for(from, before + 1).await[before].clone();
    assert!(
        crate::whatsapp::text(&asked).contains("Pregunta 1 de 6"),
        "{asked:#}"
    );
    wa.pick(from, &format!("srv:{semestral}:1:5"), 1).await;
    wa.pick(from, &format!("srv:{semestral}:2:4"), 1).await;
    let q4 = wa.pick(from, &format!("srv:{semestral}:3:4"), 1).await;
    assert_eq!(q4[0]["interactive"]["type"], "list", "{q4:#?}");
    assert_eq!(
        choices(&q4[0]),
        ids(semestral, 4, &["o0", "o1", "o2", "o3"])
    );
    let rows = q4[0]["interactive"]["action"]["sections"][0]["rows"].clone();
    assert_eq!(rows[2]["title"], "Las cumplió en parte");
    wa.pick(from, &format!("srv:{semestral}:4:o1"), 1).await;
    wa.tap(from, &format!("srv:{semestral}:5:yes"), 1).await;
    let thanks = wa.say(from, "Todo muy bien", 1).await;
    assert!(crate::whatsapp::text(&thanks[0]).starts_with("¡Gracias por responder la encuesta!"));
    assert_eq!(stored(&wa.app, semestral).await, (6, Some("chat".into())));
    let choice: Option<String> = sqlx::query_scalar(
        "select choice from survey_answers where invitation_id = $1 and position = 4",
    )
    .bind(semestral)
    .fetch_one(&wa.app.pool)
    .await
    .expect("the choice");
    assert_eq!(choice.as_deref(), Some("met"));
    assert_eq!(follow_up(&wa.app, semestral).await, None);
    wa.app.stop().await;
}
