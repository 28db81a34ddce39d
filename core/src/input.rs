//! Text people type, validated once at the edge of the core: trimmed, not empty, and within the
//! length each field allows. Each field is a type ([`Subject`], [`Answer`], …) that names its
//! error code and bound, so the rules live in one place and a value of the type is known good.

use std::marker::PhantomData;

use crate::error::{Error, Result};

/// What a field is called, its error code and its longest length in characters.
pub trait Field {
    const CODE: &'static str;
    const WHAT: &'static str;
    const MAX: usize;
}

/// Trimmed text of a [`Field`], 1 to `F::MAX` characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<F: Field>(String, PhantomData<F>);

impl<F: Field> Text<F> {
    /// The trimmed text, or a 422 with the field's code saying why not.
    pub fn parse(raw: &str) -> Result<Self> {
        let t = raw.trim();
        if t.is_empty() {
            return Err(Error::invalid(
                F::CODE,
                format!("{} must not be empty", F::WHAT),
            ));
        }
        if t.chars().count() > F::MAX {
            return Err(Error::invalid(
                F::CODE,
                format!("{} must have at most {} characters", F::WHAT, F::MAX),
            ));
        }
        Ok(Text(t.to_owned(), PhantomData))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

macro_rules! fields {
    ($($(#[$doc:meta])* $name:ident: $code:literal, $what:literal, $max:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {}
        impl Field for $name {
            const CODE: &'static str = $code;
            const WHAT: &'static str = $what;
            const MAX: usize = $max;
        }
    )*};
}

fields! {
    /// A case's subject.
    Subject: "invalid_subject", "the subject", 200;
    /// A case's description.
    Description: "invalid_description", "the description", 10_000;
    /// The answer drafted for the customer.
    Answer: "invalid_answer", "the answer", 20_000;
    /// A comment on a review or a rating.
    Comment: "invalid_comment", "the comment", 2_000;
    /// A leader's return: what to change.
    ReturnComment: "comment_required", "the comment saying what to change", 2_000;
    /// What came of the case, when it is closed.
    Outcome: "invalid_outcome", "the outcome", 2_000;
    /// A message on a case.
    Message: "invalid_message", "the message", 5_000;
    /// What staff ask the customer.
    Question: "invalid_question", "the question", 5_000;
    /// Why a legal term is extended.
    ExtensionReason: "reason_required", "the reason for the extension", 2_000;
    /// Why the quality director changed a case's type.
    ReclassificationReason: "reason_required", "the reason for the new type", 2_000;
    /// Where a visit is.
    Address: "invalid_address", "the address", 500;
    /// The service a visit is for.
    ServiceType: "invalid_service_type", "the service type", 100;
    /// One service on a quote or a contract.
    ServiceLine: "invalid_services", "each service", 200;
    /// What was offered to renew a contract.
    RenewalOffer: "invalid_note", "the note on the offer", 2_000;
    /// Why a contract was not renewed.
    NotRenewedReason: "reason_required", "the reason it was not renewed", 2_000;
    /// The title staff give a survey campaign.
    CampaignTitle: "invalid_campaign_title", "the campaign's title", 200;
    /// A survey question's wording, in one language.
    SurveyLabel: "invalid_survey_label", "each question's wording", 300;
    /// The wording of one option of a survey question, in one language.
    SurveyOptionLabel: "invalid_survey_option", "each option's wording", 80;
}

/// JSON Schema's `integer` includes `2.0`, which serde's integers refuse: reads both, as `T`
/// when it fits (for `#[serde(deserialize_with)]` on API bodies).
pub fn whole_number<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    let n = <serde_json::Number as serde::Deserialize>::deserialize(d)?;
    whole(&n)
}

/// [`whole_number`] for an optional field (`null` or left out is `None`; add `#[serde(default)]`).
pub fn optional_whole_number<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    match <Option<serde_json::Number> as serde::Deserialize>::deserialize(d)? {
        Some(n) => whole(&n).map(Some),
        None => Ok(None),
    }
}

fn whole<E: serde::de::Error, T: TryFrom<i64>>(
    n: &serde_json::Number,
) -> std::result::Result<T, E> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every whole f64 below is exact
    let whole = n
        .as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < EXACT)
                .map(|f| f as i64)
        })
        .ok_or_else(|| E::custom("expected a whole number"))?;
    T::try_from(whole).map_err(|_| E::custom(format!("{whole} is out of range")))
}
