//! Tests of the sandbox over real sockets: mail goes in with lettre or a raw SMTP client, push
//! notifications with an HTTP/2 reqwest client, and both are read back with reqwest, as the
//! project's end-to-end suite does.
//!
//! One test binary with modules, to link once.

mod api;
mod apns;
mod fcm;
mod helpers;
mod smtp;
