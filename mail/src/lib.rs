//! The service mailbox as a door of its own: what a customer must hear leaves over SMTP, and what
//! customers write to the mailbox comes in over IMAP.
