//! Server-rendered pages for people without the app: the public PQRS form, a case's status and
//! its own page reached by a secret link.
