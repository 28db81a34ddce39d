//! A case's events, messages and notifications are bounded: the case views carry the latest 50
//! with a cursor to the older ones, and the list endpoints page back `limit` at a time.

use atiende_tests::{TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

/// Every page of a list, following `next_cursor` back to the start; the pages in the order read.
async fn pages(
    app: &TestApp,
    token: &str,
    path: &str,
    first_cursor: Option<&str>,
) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    let mut cursor = first_cursor.map(str::to_owned);
    for _ in 0..100 {
        let url = match &cursor {
            Some(c) => format!("{path}?limit=20&cursor={c}"),
            None => format!("{path}?limit=20"),
        };
        let r = app.get(&url, Some(token)).await;
        assert_eq!(r.status, StatusCode::OK, "{url}: {}", r.body);
        out.push(r.body["items"].as_array().expect("items").clone());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("{path} did not end");
}

/// The pages back in time, stitched into one list, oldest first.
fn stitched(pages: Vec<Vec<Value>>) -> Vec<Value> {
    pages.into_iter().rev().flatten().collect()
}

fn field(items: &[Value], key: &str) -> Vec<Value> {
    items.iter().map(|i| i[key].clone()).collect()
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn long_conversations_come_in_pages(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let id = app.file(&customer, "consulta").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for i in 0..57 {
        let r = app
            .post(
                &format!("/api/v1/cases/{id}/messages"),
                Some(&customer),
                json!({"body": format!("mensaje {i}")}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let bodies: Vec<Value> = (0..57).map(|i| json!(format!("mensaje {i}"))).collect();

    for (token, base) in [
        (&customer, format!("/api/v1/cases/{id}")),
        (&org.director, format!("/api/v1/staff/cases/{id}")),
    ] {
        let view = app.get(&base, Some(token)).await;
        assert_eq!(view.status, StatusCode::OK, "{}", view.body);
        let latest = view.body["messages"].as_array().expect("messages").clone();
        assert_eq!(
            field(&latest, "body"),
            bodies[7..],
            "the latest 50, oldest first"
        );
        let before = view.body["messages_before"]
            .as_str()
            .expect("older messages");
        let older = pages(&app, token, &format!("{base}/messages"), Some(before)).await;
        assert_eq!(older.iter().map(Vec::len).collect::<Vec<_>>(), [7]);
        assert_eq!(field(&stitched(older), "body"), bodies[..7]);

        // From the start, 20 at a time: the same messages, none twice.
        let all = pages(&app, token, &format!("{base}/messages"), None).await;
        assert_eq!(all.iter().map(Vec::len).collect::<Vec<_>>(), [20, 20, 17]);
        assert_eq!(field(&stitched(all), "body"), bodies);

        // The filing and 57 messages: 58 events, the latest 50 in the view.
        let events = view.body["events"].as_array().expect("events").clone();
        assert_eq!(events.len(), 50);
        assert_eq!(events[49]["kind"], "customer_message");
        let before = view.body["events_before"].as_str().expect("older events");
        let older = stitched(pages(&app, token, &format!("{base}/events"), Some(before)).await);
        assert_eq!(older.len(), 8);
        assert_eq!(older[0]["kind"], "filed");
        let all = stitched(pages(&app, token, &format!("{base}/events"), None).await);
        assert_eq!(all.len(), 58);
        assert_eq!(all[8..], events[..]);
    }

    // A short case has no cursor.
    let short = app.file(&customer, "queja").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let view = app
        .get(&format!("/api/v1/cases/{short}"), Some(&customer))
        .await;
    assert_eq!(view.body["events"].as_array().map(Vec::len), Some(1));
    assert!(view.body.get("events_before").is_none(), "{}", view.body);
    assert!(view.body.get("messages_before").is_none(), "{}", view.body);

    // Bad cursors and limits are refused; someone else's case is a 404.
    for path in [
        format!("/api/v1/cases/{id}/messages?cursor=nope"),
        format!("/api/v1/cases/{id}/events?cursor=-3"),
        format!("/api/v1/cases/{id}/events?limit=0"),
    ] {
        let r = app.get(&path, Some(&customer)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
    }
    let other = app.customer("otro@test.co", "9080706050").await;
    for list in ["messages", "events"] {
        let r = app
            .get(&format!("/api/v1/cases/{id}/{list}"), Some(&other))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::NOT_FOUND, "case_not_found")
        );
        let r = app
            .get(
                &format!("/api/v1/staff/cases/{id}/{list}"),
                Some(&org.admin),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::NOT_FOUND, "case_not_found")
        );
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_case_notifications_come_in_pages(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let id = app.file(&customer, "consulta").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Deadline alerts to the director, as the scheduler writes them (the acknowledgement is first).
    sqlx::query(
        "insert into notifications (dedupe_key, case_id, user_id, kind, urgency, ttl_secs, data)
         select 'test:' || i, $1::uuid, u.id, 'deadline_warning', 'high', 60, '{}'
         from generate_series(1, 44) i, users u where u.email = 'director@test.co'",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .expect("alerts");
    let path = format!("/api/v1/staff/cases/{id}/notifications");
    let all = pages(&app, &org.director, &path, None).await;
    assert_eq!(all.iter().map(Vec::len).collect::<Vec<_>>(), [20, 20, 5]);
    let all = stitched(all);
    assert_eq!(all[0]["kind"], "acknowledgement");
    let ids: Vec<i64> = all.iter().filter_map(|n| n["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(ids.len(), 45);
    let r = app.get(&path, Some(&org.other_collaborator)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "case_not_found")
    );
}
