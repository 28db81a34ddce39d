//! Document ids live in `atiende_core` (the rest of the system creates documents); re-exported
//! here because the protocol speaks them.

pub use atiende_core::doc_id::*;
