//! In: the service mailbox read over IMAP ([`imap`]), each message parsed ([`parse`]) and turned
//! into a case or a customer's message once ([`intake`]).

pub mod imap;
pub mod intake;
pub mod parse;

pub use imap::{ImapError, ImapSettings, Inbox};
pub use intake::Limits;
