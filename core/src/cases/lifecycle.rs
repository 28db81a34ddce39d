//! The PRO-SIG-10 lifecycle as a pure function: which move takes a case from which status to
//! which, and why every other move is refused.

use crate::error::{Error, Result};
use crate::types::CaseStatus;

/// The moves of the PRO-SIG-10 lifecycle (the README opens with who makes each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Assign,
    Draft,
    Approve,
    Return,
    Close,
    Rate,
    /// Staff ask the customer for missing information; the case waits on them.
    RequestInfo,
}

impl Action {
    pub(super) fn event_kind(self) -> &'static str {
        match self {
            Action::Assign => "assigned",
            Action::Draft => "drafted",
            Action::Approve => "approved",
            Action::Return => "returned",
            Action::Close => "closed",
            Action::Rate => "rated",
            Action::RequestInfo => "information_requested",
        }
    }

    /// Internal review steps stay between staff; the customer sees progress and the outcome.
    pub(super) fn visible_to_customer(self) -> bool {
        matches!(
            self,
            Action::Assign | Action::Close | Action::Rate | Action::RequestInfo
        )
    }
}

/// Where `action` takes a case in `from`, or why it cannot (a 409 code).
pub fn next_status(action: Action, from: CaseStatus) -> Result<CaseStatus> {
    use CaseStatus::*;
    let refuse = |code, message: &str| {
        Err(Error::conflict(
            code,
            format!("{message} (the case is {from})"),
        ))
    };
    match (action, from) {
        (_, Withdrawn) => refuse(
            "case_withdrawn",
            "the case was closed as withdrawn; the customer may file it again",
        ),
        (_, WaitingCustomer) => refuse(
            "waiting_on_customer",
            "the case is waiting for the customer's reply to a request for information",
        ),
        (Action::RequestInfo, Received | Assigned) => Ok(WaitingCustomer),
        (Action::RequestInfo, _) => refuse(
            "answer_in_progress",
            "information can be requested only before the answer is drafted",
        ),
        (Action::Assign, Received | Assigned) => Ok(Assigned),
        (Action::Assign, _) => refuse(
            "case_past_assignment",
            "the case already has an answer in progress and cannot be reassigned",
        ),
        (Action::Draft, Assigned) => Ok(InApproval),
        (Action::Draft, Received) => refuse(
            "case_not_assigned",
            "the case must be assigned to a process before drafting",
        ),
        (Action::Draft, InApproval) => refuse(
            "draft_pending_approval",
            "a draft is already waiting for approval",
        ),
        (Action::Draft, _) => refuse("answer_already_approved", "the answer was already approved"),
        (Action::Approve | Action::Return, InApproval) => Ok(if action == Action::Approve {
            Approved
        } else {
            Assigned
        }),
        (Action::Approve | Action::Return, _) => refuse(
            "no_draft_to_review",
            "there is no draft waiting for approval",
        ),
        (Action::Close, Approved) => Ok(Answered),
        (Action::Close, Answered | Rated) => refuse(
            "case_already_closed",
            "the case was already closed and answered",
        ),
        (Action::Close, _) => refuse(
            "answer_not_approved",
            "the answer must be approved by the process leader before closing",
        ),
        (Action::Rate, Answered) => Ok(Rated),
        (Action::Rate, Rated) => refuse("case_already_rated", "the answer was already rated"),
        (Action::Rate, _) => refuse(
            "case_not_answered",
            "the case can be rated only after it is answered",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CaseStatus::*;

    #[test]
    fn the_happy_path_follows_the_design() {
        let mut s = Received;
        for (action, expected) in [
            (Action::Assign, Assigned),
            (Action::Draft, InApproval),
            (Action::Return, Assigned),
            (Action::Draft, InApproval),
            (Action::Approve, Approved),
            (Action::Close, Answered),
            (Action::Rate, Rated),
        ] {
            s = next_status(action, s).unwrap_or_else(|e| panic!("{action:?} from {s}: {e}"));
            assert_eq!(s, expected);
        }
    }

    #[test]
    fn every_other_move_is_refused_with_a_reason() {
        let allowed = |a, s| {
            matches!(
                (a, s),
                (Action::Assign, Received | Assigned)
                    | (Action::Draft, Assigned)
                    | (Action::Approve | Action::Return, InApproval)
                    | (Action::Close, Approved)
                    | (Action::Rate, Answered)
                    | (Action::RequestInfo, Received | Assigned)
            )
        };
        for &s in CaseStatus::ALL {
            for a in [
                Action::Assign,
                Action::Draft,
                Action::Approve,
                Action::Return,
                Action::Close,
                Action::Rate,
                Action::RequestInfo,
            ] {
                match next_status(a, s) {
                    Ok(_) => assert!(allowed(a, s), "{a:?} allowed from {s}"),
                    Err(Error::Conflict { code, .. }) => {
                        assert!(!allowed(a, s) && !code.is_empty())
                    }
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
        }
    }
}
