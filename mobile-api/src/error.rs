//! Every error the API returns is `application/problem+json` (RFC 9457) with a stable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// Every `code` the API answers with: part of the contract, listed in the document. A code is
/// added here when it is added to `atiende_core` or this crate, and never renamed.
pub const PROBLEM_CODES: &[&str] = &[
    "analysis_changed",
    "analysis_required",
    "analysis_too_long",
    "answer_already_approved",
    "answer_in_progress",
    "answer_not_approved",
    "app_user_exists",
    "assignee_not_in_process",
    "blob_hash_mismatch",
    "blob_not_found",
    "body_too_large",
    "case_already_closed",
    "case_already_rated",
    "case_not_answered",
    "case_not_assigned",
    "case_not_found",
    "case_past_assignment",
    "case_withdrawn",
    "comment_required",
    "consent_required",
    "contact_already_merged",
    "contact_not_found",
    "contract_not_found",
    "customer_already_registered",
    "customer_exists",
    "customer_not_found",
    "customer_not_verified",
    "customers_only",
    "draft_pending_approval",
    "duplicate_survey_option",
    "duplicate_survey_question",
    "email_required",
    "email_taken",
    "endpoint_has_credentials",
    "endpoint_not_https",
    "endpoint_not_public",
    "extension_already_used",
    "extension_not_later",
    "extension_too_long",
    "follow_up_closed",
    "follow_up_not_found",
    "idempotency_conflict",
    "internal_error",
    "invalid_address",
    "invalid_amount",
    "invalid_answer",
    "invalid_auth",
    "invalid_blob_id",
    "invalid_body",
    "invalid_campaign_dates",
    "invalid_campaign_title",
    "invalid_channel",
    "invalid_comment",
    "invalid_contract_dates",
    "invalid_credentials",
    "invalid_cursor",
    "invalid_decided_at",
    "invalid_description",
    "invalid_document_number",
    "invalid_email",
    "invalid_endpoint",
    "invalid_follow_up",
    "invalid_follow_up_action",
    "invalid_format",
    "invalid_id",
    "invalid_language",
    "invalid_limit",
    "invalid_message",
    "invalid_month",
    "invalid_name",
    "invalid_note",
    "invalid_outcome",
    "invalid_p256dh",
    "invalid_password",
    "invalid_phone",
    "invalid_process_code",
    "invalid_query",
    "invalid_question",
    "invalid_range",
    "invalid_reason",
    "invalid_sample_size",
    "invalid_score",
    "invalid_service_type",
    "invalid_services",
    "invalid_subject",
    "invalid_survey_choice",
    "invalid_survey_label",
    "invalid_survey_option",
    "invalid_survey_options",
    "invalid_survey_question_code",
    "invalid_survey_question_count",
    "invalid_survey_score",
    "invalid_survey_yes_no",
    "invalid_technicians",
    "invalid_type",
    "invalid_warning_percents",
    "invalid_working_hours",
    "invalid_year",
    "legal_term_expired",
    "legal_term_extended",
    "malformed_json",
    "method_not_allowed",
    "month_in_future",
    "no_draft_to_review",
    "not_a_campaign_template",
    "not_a_contact",
    "not_assignee",
    "not_commercial_staff",
    "not_found",
    "not_process_leader",
    "not_process_member",
    "password_not_set",
    "process_exists",
    "process_not_found",
    "push_endpoint_taken",
    "push_not_configured",
    "quote_already_contracted",
    "quote_already_decided",
    "quote_not_accepted",
    "quote_not_found",
    "range_too_long",
    "rating_comment_not_allowed",
    "reason_required",
    "received_in_future",
    "received_too_long_ago",
    "renewal_already_decided",
    "renewal_already_offered",
    "renewal_not_offered",
    "report_read_only",
    "role_not_allowed",
    "same_customer",
    "same_type",
    "sent_in_future",
    "server_busy",
    "setup_link_expired",
    "setup_link_not_found",
    "setup_link_replaced",
    "setup_link_used",
    "staff_only",
    "subscription_not_found",
    "survey_answer_required",
    "survey_answered",
    "survey_campaign_closed",
    "survey_campaign_not_found",
    "survey_expired",
    "survey_not_found",
    "survey_template_not_found",
    "survey_text_too_long",
    "survey_version_frozen",
    "survey_version_not_found",
    "technicians_only",
    "too_many_attachments",
    "too_many_attempts",
    "unauthenticated",
    "unknown_attachment",
    "unknown_customer",
    "unknown_process",
    "unknown_survey_question",
    "unknown_table",
    "unknown_work_order",
    "unreadable_body",
    "unsupported_blob_type",
    "unsupported_media_type",
    "user_not_found",
    "waiting_on_customer",
    "weak_password",
    "work_order_not_found",
    "work_order_of_another_customer",
];

/// An RFC 9457 problem document. `code` is what apps switch on; `detail` is for people.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: &'static str,
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

impl utoipa::PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .description(Some(
                "An RFC 9457 problem document. `code` is what apps switch on; `detail` is for people.",
            ))
            .property(
                "type",
                text().description(Some("`urn:atiende:problem:` and the code")),
            )
            .required("type")
            .property(
                "title",
                text().description(Some("The reason phrase of the status")),
            )
            .required("title")
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(400))
                    .maximum(Some(599)),
            )
            .required("status")
            .property("code", text().enum_values(Some(PROBLEM_CODES.iter().copied())))
            .required("code")
            .property("detail", text())
            .required("detail")
            .property(
                "retry_after_seconds",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .description(Some("With 429 and 503 `server_busy`: how long to wait")),
            )
            .into()
    }
}

impl utoipa::ToSchema for Problem {}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }
}

impl From<atiende_core::Error> for ApiError {
    fn from(err: atiende_core::Error) -> Self {
        use atiende_core::Error as E;
        match err {
            E::Invalid { code, message } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            E::NotFound { code, what } => {
                Self::new(StatusCode::NOT_FOUND, code, format!("{what} not found"))
            }
            E::Unauthenticated => Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a valid bearer token is required",
            ),
            E::InvalidCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "invalid e-mail or password",
            ),
            E::Forbidden { code, message } => Self::new(StatusCode::FORBIDDEN, code, message),
            E::Conflict { code, message } => Self::new(StatusCode::CONFLICT, code, message),
            E::TooManyAttempts { retry_after } => ApiError {
                retry_after: Some(retry_after.as_secs().max(1)),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    "too many failed attempts; try again later",
                )
            },
            E::Busy { retry_after } => ApiError {
                retry_after: Some(retry_after.as_secs().max(1)),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_busy",
                    "the server is busy; try again shortly",
                )
            },
            E::Database(e) => internal(&e),
            E::Internal(e) => internal(&e),
        }
    }
}

/// The detail goes to the log, once; the client gets an opaque 500.
fn internal(err: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %err, "internal error");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "the server could not complete the request",
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            problem_type: format!("urn:atiende:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            code: self.code,
            detail: self.detail,
            retry_after_seconds: self.retry_after,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::PROBLEM_CODES;

    /// Snake-case string literals inside the calls that make an error, in one source file.
    fn codes_in(source: &str) -> Vec<String> {
        const MAKERS: &[&str] = &[
            "invalid(",
            "forbidden(",
            "conflict(",
            "not_found(",
            "bad_request(",
            "ApiError::new(",
            "text(",
            "decode_key(",
            "refuse(",
        ];
        let mut codes = Vec::new();
        for maker in MAKERS {
            for (at, _) in source.match_indices(maker) {
                // `text(` but not `opt_text(`.
                let joined =
                    source[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
                if !joined {
                    codes.extend(literals_of_call(&source[at + maker.len()..]));
                }
            }
        }
        for (at, _) in source.match_indices("code: \"") {
            let rest = &source[at + "code: \"".len()..];
            codes.extend(rest.split('"').next().map(str::to_owned));
        }
        codes.retain(|c| {
            c.contains('_')
                && !c.ends_with('_')
                && c.starts_with(|ch: char| ch.is_ascii_lowercase())
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
        });
        codes
    }

    /// The string literals up to the parenthesis that closes the call.
    fn literals_of_call(args: &str) -> Vec<String> {
        let mut depth = 1;
        let mut literals = Vec::new();
        let mut chars = args.chars();
        while let Some(c) = chars.next() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                '"' => {
                    let mut literal = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => {
                                chars.next();
                            }
                            '"' => break,
                            c => literal.push(c),
                        }
                    }
                    literals.push(literal);
                }
                _ => {}
            }
        }
        literals
    }

    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir)
            .expect("read a source folder")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// An error code added to the domain or the API without being listed would be served
    /// against the document.
    #[test]
    fn every_code_in_the_sources_is_documented() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        sources(&root.join("src"), &mut files);
        sources(&root.join("../core/src"), &mut files);
        let mut missing = std::collections::BTreeSet::new();
        for file in files {
            let source = std::fs::read_to_string(&file).expect("read a source file");
            for code in codes_in(&source) {
                if !PROBLEM_CODES.contains(&code.as_str()) {
                    missing.insert(format!("{code} ({})", file.display()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "codes not in PROBLEM_CODES: {missing:#?}"
        );
        let mut sorted = PROBLEM_CODES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), PROBLEM_CODES.len(), "a code is listed twice");
    }
}
